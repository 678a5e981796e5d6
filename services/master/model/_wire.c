/* A snapshot chunk's messages taken in from the wire (intake.py's Intake.take_messages).
 *
 * The Python loop reads five fields of every message through protobuf's Python objects,
 * each read making an object anew; here the same facts are read off the bytes the chunk
 * was parsed from. Only what any protobuf encoder writes is read: a field of the path
 * present twice (which upb would merge), a known field of an unexpected wire type, a
 * group, a malformed varint, a message the Python loop would refuse (empty id, another
 * account's, a time out of range, no conversation) or a count that differs from the
 * parsed repeated field: for any of these take_messages declines, having changed
 * nothing, and the Python loop takes the chunk (and names what is wrong). So what this
 * reads, when it reads, is what upb parsed; tests/test_wire.py holds the two equal.
 *
 * The key made here is time_keys.of_time's: 8 bytes big-endian of (BIAS - seconds),
 * 4 of (999999999 - nanos), the id's UTF-8 bytes each inverted, then 0xff.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Field numbers (proto/imsync/v1/entities.proto, google/protobuf/timestamp.proto). */
enum { M_ACCOUNT_ID = 1, M_MESSAGE_ID = 2, M_CONVERSATION_ID = 3, M_CREATE_TIME = 8, M_DIRECTION = 13 };
enum { T_SECONDS = 1, T_NANOS = 2 };
enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };
enum { DIRECTION_UNSPECIFIED = 0, DIRECTION_INBOUND = 1 };

#define BIAS ((uint64_t)1 << 62)
#define MAX_FIELD 536870911L /* 2^29 - 1 */
#define MAX_NANOS 999999999u

typedef struct {
    const uint8_t *p, *end;
} Span;

/* A varint of at most 10 bytes whose value fits 64 bits; 0 if there is none. */
static int varint(Span *s, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64 && s->p < s->end; shift += 7) {
        uint8_t byte = *s->p++;
        if (shift == 63 && byte > 1)
            return 0;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 1;
        }
    }
    return 0;
}

/* The next field's number and wire type; 0 at the end or at anything not understood. */
static int tag(Span *s, uint32_t *number, int *wire_type) {
    uint64_t t;
    if (s->p >= s->end || !varint(s, &t) || t > UINT32_MAX || (t >> 3) == 0)
        return 0;
    *number = (uint32_t)(t >> 3);
    *wire_type = (int)(t & 7);
    return *wire_type == WT_VARINT || *wire_type == WT_FIXED64 || *wire_type == WT_LEN || *wire_type == WT_FIXED32;
}

/* A length-delimited field's bytes. */
static int delimited(Span *s, Span *out) {
    uint64_t length;
    if (!varint(s, &length) || length > (uint64_t)(s->end - s->p))
        return 0;
    out->p = s->p;
    out->end = s->p + length;
    s->p += length;
    return 1;
}

/* Passes over a field of `wire_type` whose tag was read. */
static int skip(Span *s, int wire_type) {
    uint64_t ignored;
    Span inner;
    switch (wire_type) {
    case WT_VARINT:
        return varint(s, &ignored);
    case WT_FIXED64:
        if (s->end - s->p < 8)
            return 0;
        s->p += 8;
        return 1;
    case WT_FIXED32:
        if (s->end - s->p < 4)
            return 0;
        s->p += 4;
        return 1;
    case WT_LEN:
        return delimited(s, &inner);
    }
    return 0;
}

/* The one field `number` of the message in `s`, length-delimited; 0 if it is absent,
 * present twice, or of another wire type. */
static int only_field(Span s, uint32_t number, Span *out) {
    uint32_t n;
    int wt, found = 0;
    while (s.p < s.end) {
        if (!tag(&s, &n, &wt))
            return 0;
        if (n == number) {
            if (found || wt != WT_LEN || !delimited(&s, out))
                return 0;
            found = 1;
        } else if (!skip(&s, wt)) {
            return 0;
        }
    }
    return found;
}

typedef struct {
    Span id, account, conversation;
    int64_t seconds;
    uint32_t nanos;
    int direction; /* DIRECTION_UNSPECIFIED, DIRECTION_INBOUND, or 2 for any other */
} Facts;

static int read_time(Span s, Facts *f) {
    uint32_t n;
    int wt, seen_seconds = 0, seen_nanos = 0;
    uint64_t value;
    while (s.p < s.end) {
        if (!tag(&s, &n, &wt))
            return 0;
        if (n == T_SECONDS || n == T_NANOS) {
            int *seen = n == T_SECONDS ? &seen_seconds : &seen_nanos;
            if (*seen || wt != WT_VARINT || !varint(&s, &value))
                return 0;
            *seen = 1;
            if (n == T_SECONDS)
                f->seconds = (int64_t)value;
            else if (value > MAX_NANOS) /* negative too: upb would keep its low 32 bits */
                return 0;
            else
                f->nanos = (uint32_t)value;
        } else if (!skip(&s, wt)) {
            return 0;
        }
    }
    return 1;
}

/* The facts of one message; 0 if the Python loop must read it. */
static int read_message(Span s, Facts *f) {
    uint32_t n;
    int wt;
    unsigned seen = 0;
    uint64_t value;
    Span time;
    memset(f, 0, sizeof *f);
    while (s.p < s.end) {
        if (!tag(&s, &n, &wt))
            return 0;
        switch (n) {
        case M_ACCOUNT_ID:
        case M_MESSAGE_ID:
        case M_CONVERSATION_ID:
        case M_CREATE_TIME:
        case M_DIRECTION:
            if (seen & (1u << n))
                return 0;
            seen |= 1u << n;
            if (n == M_DIRECTION) {
                if (wt != WT_VARINT || !varint(&s, &value) || value > INT32_MAX)
                    return 0;
                f->direction = value == DIRECTION_INBOUND ? DIRECTION_INBOUND : value == DIRECTION_UNSPECIFIED ? DIRECTION_UNSPECIFIED : 2;
                break;
            }
            if (wt != WT_LEN)
                return 0;
            if (!delimited(&s, n == M_ACCOUNT_ID ? &f->account : n == M_MESSAGE_ID ? &f->id : n == M_CONVERSATION_ID ? &f->conversation : &time))
                return 0;
            if (n == M_CREATE_TIME && !read_time(time, f))
                return 0;
            break;
        default:
            if (!skip(&s, wt))
                return 0;
        }
    }
    return 1;
}

static int same(Span a, const char *b, Py_ssize_t length) {
    return a.end - a.p == length && memcmp(a.p, b, (size_t)length) == 0;
}

typedef struct {
    PyObject *id, *key, *conversation;
    int direction;
} Taken;

static void release(Taken *taken, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_XDECREF(taken[i].id);
        Py_XDECREF(taken[i].key);
        Py_XDECREF(taken[i].conversation);
    }
    PyMem_Free(taken);
}

static PyObject *make_key(const Facts *f) {
    Py_ssize_t id_length = f->id.end - f->id.p;
    PyObject *key = PyBytes_FromStringAndSize(NULL, 12 + id_length + 1);
    if (key == NULL)
        return NULL;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(key);
    uint64_t head = BIAS - (uint64_t)f->seconds;
    uint32_t nanos = MAX_NANOS - f->nanos;
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(head >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        out[8 + i] = (uint8_t)(nanos >> (24 - 8 * i));
    for (Py_ssize_t i = 0; i < id_length; i++)
        out[12 + i] = (uint8_t)(255 - f->id.p[i]);
    out[12 + id_length] = 0xff;
    return key;
}

/* Reads every message of the batch at `path` in `data` and makes its objects; on any
 * doubt returns 0 having made none (and set no error), on an error of Python's -1. */
static int read_all(Py_buffer *data, PyObject *path, const char *account, Py_ssize_t account_length,
                    long long min_seconds, long long max_seconds, Py_ssize_t count, Taken **result) {
    Span s = {(const uint8_t *)data->buf, (const uint8_t *)data->buf + data->len};
    Py_ssize_t depth = PyTuple_GET_SIZE(path);
    if (depth < 1)
        return 0;
    for (Py_ssize_t i = 0; i < depth - 1; i++) {
        long number = PyLong_AsLong(PyTuple_GET_ITEM(path, i));
        if (number <= 0 || number > MAX_FIELD)
            return number == -1 && PyErr_Occurred() ? -1 : 0;
        if (!only_field(s, (uint32_t)number, &s))
            return 0;
    }
    long field = PyLong_AsLong(PyTuple_GET_ITEM(path, depth - 1));
    if (field <= 0 || field > MAX_FIELD)
        return field == -1 && PyErr_Occurred() ? -1 : 0;

    Taken *taken = PyMem_Calloc(count > 0 ? (size_t)count : 1, sizeof(Taken));
    if (taken == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t found = 0;
    Span previous_conversation = {NULL, NULL};
    uint32_t n;
    int wt;
    Facts f;
    Span item;
    while (s.p < s.end) {
        if (!tag(&s, &n, &wt))
            goto decline;
        if (n != (uint32_t)field) {
            if (!skip(&s, wt))
                goto decline;
            continue;
        }
        if (wt != WT_LEN || found == count || !delimited(&s, &item) || !read_message(item, &f))
            goto decline;
        if (f.id.p == f.id.end || f.conversation.p == f.conversation.end)
            goto decline;
        if (f.account.p != f.account.end && !same(f.account, account, account_length))
            goto decline;
        if (f.seconds < min_seconds || f.seconds > max_seconds)
            goto decline;
        Taken *t = &taken[found];
        t->direction = f.direction;
        t->id = PyUnicode_DecodeUTF8((const char *)f.id.p, f.id.end - f.id.p, NULL);
        if (t->id == NULL)
            goto failed;
        t->key = make_key(&f);
        if (t->key == NULL)
            goto failed;
        /* A conversation's messages mostly come together: one str for the run. */
        if (found > 0 && previous_conversation.end - previous_conversation.p == f.conversation.end - f.conversation.p &&
            memcmp(previous_conversation.p, f.conversation.p, (size_t)(f.conversation.end - f.conversation.p)) == 0) {
            t->conversation = Py_NewRef(taken[found - 1].conversation);
        } else {
            t->conversation = PyUnicode_DecodeUTF8((const char *)f.conversation.p, f.conversation.end - f.conversation.p, NULL);
            if (t->conversation == NULL)
                goto failed;
        }
        previous_conversation = f.conversation;
        found++;
    }
    if (found != count)
        goto decline;
    *result = taken;
    return 1;

failed:
    /* upb checked the strings' UTF-8 when it parsed them; bytes it did not are not ours to read. */
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        release(taken, found + 1);
        return -1;
    }
    PyErr_Clear();
decline:
    release(taken, found + 1 <= count ? found + 1 : count);
    return 0;
}

static PyObject *take_messages(PyObject *module, PyObject *args) {
    Py_buffer data;
    PyObject *path, *account_id, *items, *places, *keys, *groups, *inbound_keys, *inbound_conversations, *inbound_ids, *undirected;
    long long min_seconds, max_seconds, place;
    if (!PyArg_ParseTuple(args, "y*O!ULLLOO!O!O!O!O!O!O!:take_messages", &data, &PyTuple_Type, &path, &account_id, &min_seconds,
                          &max_seconds, &place, &items, &PyDict_Type, &places, &PyList_Type, &keys, &PyDict_Type, &groups,
                          &PyList_Type, &inbound_keys, &PyList_Type, &inbound_conversations, &PyList_Type, &inbound_ids,
                          &PyList_Type, &undirected))
        return NULL;
    PyObject *outcome = NULL;
    Taken *taken = NULL;
    Py_ssize_t account_length, count = PySequence_Size(items);
    const char *account = PyUnicode_AsUTF8AndSize(account_id, &account_length);
    if (count < 0 || account == NULL)
        goto done;
    int read = read_all(&data, path, account, account_length, min_seconds, max_seconds, count, &taken);
    if (read <= 0) {
        outcome = read < 0 ? NULL : Py_NewRef(Py_False);
        goto done;
    }
    /* As the Python loop does, in its order. */
    for (Py_ssize_t i = 0; i < count; i++) {
        Taken *t = &taken[i];
        PyObject *at = PyLong_FromLongLong(place + i);
        if (at == NULL || PyDict_SetItem(places, t->id, at) < 0) {
            Py_XDECREF(at);
            goto done;
        }
        Py_DECREF(at);
        if (PyList_Append(keys, t->key) < 0)
            goto done;
        PyObject *group = PyDict_GetItemWithError(groups, t->conversation);
        if (group == NULL) {
            if (PyErr_Occurred())
                goto done;
            group = PyList_New(1);
            if (group == NULL)
                goto done;
            PyList_SET_ITEM(group, 0, Py_NewRef(t->key));
            int stored = PyDict_SetItem(groups, t->conversation, group);
            Py_DECREF(group);
            if (stored < 0)
                goto done;
        } else if (PyList_Append(group, t->key) < 0) {
            goto done;
        }
        if (t->direction == DIRECTION_INBOUND) {
            if (PyList_Append(inbound_keys, t->key) < 0 || PyList_Append(inbound_conversations, t->conversation) < 0 ||
                PyList_Append(inbound_ids, t->id) < 0)
                goto done;
        } else if (t->direction == DIRECTION_UNSPECIFIED) {
            PyObject *message = PySequence_GetItem(items, i);
            if (message == NULL)
                goto done;
            PyObject *pair = PyTuple_Pack(2, t->key, message);
            Py_DECREF(message);
            if (pair == NULL)
                goto done;
            int appended = PyList_Append(undirected, pair);
            Py_DECREF(pair);
            if (appended < 0)
                goto done;
        }
    }
    outcome = Py_NewRef(Py_True);
done:
    if (taken != NULL)
        release(taken, count);
    PyBuffer_Release(&data);
    return outcome;
}

static PyMethodDef methods[] = {
    {"take_messages", take_messages, METH_VARARGS,
     "take_messages(data, path, account_id, min_seconds, max_seconds, place, items, places, keys, groups,\n"
     "              inbound_keys, inbound_conversations, inbound_ids, undirected) -> bool\n\n"
     "Takes in the messages of the EntityBatch field at `path` (field numbers from the top of\n"
     "`data`, the last being the batch's messages field) as Intake.take_messages does; False,\n"
     "having changed nothing, where the Python loop must read them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_wire", .m_doc = "Snapshot messages read off the wire (intake.py).", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__wire(void) { return PyModule_Create(&module); }
