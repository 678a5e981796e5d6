/* The loops of json_views.py's one-loop pages (JsonViews.conversations_of, messages_of,
 * inbox_of), in C: a page's items joined from the kept pieces with no Python bytecode per
 * item.
 *
 * Each function walks an order's keys as its Python loop does and makes an item only where
 * every piece is at hand: the entity's kept head (encodings.py: id(entity) -> (entity,
 * head), touched as Encodings.find touches it) and its tail, kept by its read state.
 * Anything else (a conversation the team handles, a notification, pieces not kept yet, a
 * key whose entity is not there) is left None and named in `missing`, (index, id) or
 * (index, kind, id), for the Python caller to make as the views do. So what this makes is
 * what the Python loop makes; tests/test_json_views.py holds the two equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *s_conversation, *s_message, *s_comment, *s_unified, *s_move_to_end, *s_message_prefix, *s_direction, *zero;
/* entities.proto's Direction. */
enum { DIRECTION_UNSPECIFIED = 0, DIRECTION_INBOUND = 1 };

/* The entity's kept head (a new reference), touched as the least recently used no more
 * (`touch`: the kept entries' move_to_end);
 * NULL without an error when none is kept for this very object. */
static PyObject *find_kept(PyObject *kept, PyObject *touch, PyObject *entity, Py_ssize_t *hits) {
    PyObject *key = PyLong_FromVoidPtr(entity);
    if (key == NULL)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(kept, key); /* borrowed */
    if (found == NULL || !PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 2 ||
        PyTuple_GET_ITEM(found, 0) != entity || !PyBytes_Check(PyTuple_GET_ITEM(found, 1))) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *head = Py_NewRef(PyTuple_GET_ITEM(found, 1));
    PyObject *moved = PyObject_CallOneArg(touch, key);
    Py_DECREF(key);
    if (moved == NULL) {
        Py_DECREF(head);
        return NULL;
    }
    Py_DECREF(moved);
    ++*hits;
    return head;
}

/* The entity of `id` (a new reference) in a table (entity_table.py): `where` maps an id to
 * the entity, or, where `parts` is not None, to its place there (part << 32 | index);
 * NULL without an error when there is none. */
static PyObject *entity_of(PyObject *where, PyObject *parts, PyObject *id) {
    PyObject *found = PyDict_GetItemWithError(where, id);
    if (found == NULL)
        return NULL;
    if (parts == Py_None || !PyLong_CheckExact(found))
        return Py_NewRef(found);
    long long place = PyLong_AsLongLong(found);
    if (place == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t part = (Py_ssize_t)(place >> 32), index = (Py_ssize_t)(place & 0xffffffffLL);
    if (!PyList_Check(parts) || part < 0 || part >= PyList_GET_SIZE(parts)) {
        PyErr_SetString(PyExc_IndexError, "an entity's place is past its table's parts");
        return NULL;
    }
    return PySequence_GetItem(PyList_GET_ITEM(parts, part), index);
}

/* head + tail, or NULL without an error when either is empty or not bytes. */
static PyObject *joined(PyObject *head, PyObject *tail) {
    if (tail == NULL || !PyBytes_Check(tail))
        return NULL;
    Py_ssize_t a = PyBytes_GET_SIZE(head), b = PyBytes_GET_SIZE(tail);
    if (a == 0 || b == 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, a + b);
    if (out == NULL)
        return NULL;
    memcpy(PyBytes_AS_STRING(out), PyBytes_AS_STRING(head), (size_t)a);
    memcpy(PyBytes_AS_STRING(out) + a, PyBytes_AS_STRING(tail), (size_t)b);
    return out;
}

/* A page being made: its items, what is left to the caller, the last key taken. */
typedef struct {
    PyObject *items, *missing, *last, *touch;
    Py_ssize_t hits;
    int more;
} Page;

/* A page of the entries kept in `kept`, whose move_to_end is looked up once for all. */
static int page_open(Page *page, PyObject *kept) {
    page->items = PyList_New(0);
    page->missing = PyList_New(0);
    page->last = NULL;
    page->touch = PyObject_GetAttr(kept, s_move_to_end);
    page->hits = 0;
    page->more = 0;
    return page->items != NULL && page->missing != NULL && page->touch != NULL ? 0 : -1;
}

/* (items, last, more, missing, hits), or NULL if `failed`; the page is let go either way. */
static PyObject *page_close(Page *page, int failed) {
    PyObject *out = failed || PyErr_Occurred() ? NULL
                                                : Py_BuildValue("(OOOOn)", page->items, page->last ? page->last : Py_None,
                                                                page->more ? Py_True : Py_False, page->missing, page->hits);
    Py_XDECREF(page->items);
    Py_XDECREF(page->missing);
    Py_XDECREF(page->last);
    Py_XDECREF(page->touch);
    return out;
}

/* Appends `item`, or None and (index, *what) to the page's `missing` when there is none
 * (`what`: the id, or the kind and the id). Steals `item`. */
static int put(Page *page, PyObject *item, PyObject *kind, PyObject *id) {
    if (item != NULL) {
        int failed = PyList_Append(page->items, item);
        Py_DECREF(item);
        return failed;
    }
    Py_ssize_t index = PyList_GET_SIZE(page->items);
    PyObject *where = kind ? Py_BuildValue("(nOO)", index, kind, id) : Py_BuildValue("(nO)", index, id);
    if (where == NULL)
        return -1;
    int failed = PyList_Append(page->missing, where);
    Py_DECREF(where);
    return failed ? failed : PyList_Append(page->items, Py_None);
}

/* A message's direction decides is_inbound (account_base.py) when it is given: 1 inbound,
 * 0 not, -2 when it is not given (is_inbound compares the sender then), -1 on an error (set). */
static int inbound_by_direction(PyObject *message) {
    PyObject *direction = PyObject_GetAttr(message, s_direction);
    if (direction == NULL)
        return -1;
    long value = PyLong_AsLong(direction);
    Py_DECREF(direction);
    if (value == -1 && PyErr_Occurred())
        return -1;
    return value == DIRECTION_UNSPECIFIED ? -2 : value == DIRECTION_INBOUND;
}

/* The tails of one kind's unmarked items (read_ns None) met in a page, by (shown, is_new):
 * a page's items are mostly unmarked, and four tails at most serve them all, each looked up
 * in `tails` once a page. Each held (a new reference) until the page is let go. */
typedef struct {
    PyObject *tail[2][2];
    char looked[2][2];
} Unmarked;

static void unmarked_clear(Unmarked *unmarked) {
    for (int shown = 0; shown < 2; shown++)
        for (int is_new = 0; is_new < 2; is_new++) {
            Py_CLEAR(unmarked->tail[shown][is_new]);
            unmarked->looked[shown][is_new] = 0;
        }
}

/* head + the tail kept for the item's read state, tails[(*key, read_ns, shown, is_new)]:
 * read_ns its mark in `read_at` under `named` (None without one), shown whether it counts
 * read (marked, or else for a comment `counts(entity)` (is_own) is true, for a `message`
 * is_inbound is false: its direction, or `counts(entity)` without one), is_new whether
 * `named` is in `new_items` (message_reading, comment_reading); an unmarked item's tail is
 * taken from `unmarked`, the page's. NULL where no such tail is kept, or on an error (set). */
static PyObject *with_reading(PyObject *head, PyObject *key, PyObject *named, PyObject *entity, PyObject *counts,
                              int message, PyObject *read_at, PyObject *new_items, PyObject *tails,
                              Unmarked *unmarked) {
    PyObject *read_ns = PyDict_GetItemWithError(read_at, named);
    if (read_ns == NULL && PyErr_Occurred())
        return NULL;
    int shown = 1;
    if (read_ns == NULL) {
        int yes = message ? inbound_by_direction(entity) : -2;
        if (yes == -2) {
            PyObject *test = PyObject_CallOneArg(counts, entity);
            yes = test == NULL ? -1 : PyObject_IsTrue(test);
            Py_XDECREF(test);
        }
        if (yes < 0)
            return NULL;
        shown = message ? !yes : yes;
    }
    int is_new = PySequence_Contains(new_items, named);
    if (is_new < 0)
        return NULL;
    if (read_ns == NULL && unmarked->looked[shown][is_new])
        return joined(head, unmarked->tail[shown][is_new]);
    Py_ssize_t n = PyTuple_GET_SIZE(key);
    PyObject *reading = PyTuple_New(n + 3);
    if (reading == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(reading, i, Py_NewRef(PyTuple_GET_ITEM(key, i)));
    PyTuple_SET_ITEM(reading, n, Py_NewRef(read_ns ? read_ns : Py_None));
    PyTuple_SET_ITEM(reading, n + 1, Py_NewRef(shown ? Py_True : Py_False));
    PyTuple_SET_ITEM(reading, n + 2, Py_NewRef(is_new ? Py_True : Py_False));
    PyObject *tail = PyDict_GetItemWithError(tails, reading); /* borrowed */
    Py_DECREF(reading);
    if (tail == NULL && PyErr_Occurred())
        return NULL;
    if (read_ns == NULL) {
        unmarked->tail[shown][is_new] = Py_XNewRef(tail);
        unmarked->looked[shown][is_new] = 1;
    }
    return joined(head, tail);
}

/* An item's id in its time key (time_keys.item_of): the bytes between the 12 of the time
 * and the end mark, each inverted, as UTF-8 with surrogates passed. */
static PyObject *item_of(PyObject *key) {
    if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) < 13) {
        PyErr_SetString(PyExc_ValueError, "not a time key");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(key) - 13;
    if (n == 0)
        return PyUnicode_New(0, 0);
    const unsigned char *from = (const unsigned char *)PyBytes_AS_STRING(key) + 12;
    char small[256];
    char *to = n <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)n);
    if (to == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++)
        to[i] = (char)(255 - from[i]);
    PyObject *id = PyUnicode_DecodeUTF8(to, n, "surrogatepass");
    if (to != small)
        PyMem_Free(to);
    return id;
}

static PyObject *conversations(PyObject *self, PyObject *args) {
    PyObject *keys, *threads_of, *stored, *kept, *unread_by, *pinned, *muted, *tails;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OnO!O!O!O!OOO!", &keys, &limit, &PyDict_Type, &threads_of, &PyDict_Type, &stored,
                          &PyDict_Type, &kept, &PyDict_Type, &unread_by, &pinned, &muted, &PyDict_Type, &tails))
        return NULL;
    Page page;
    PyObject *iterator = page_open(&page, kept) < 0 ? NULL : PyObject_GetIter(keys), *key;
    int failed = iterator == NULL;
    while (!failed && (key = PyIter_Next(iterator)) != NULL) {
        if (PyList_GET_SIZE(page.items) == limit) {
            Py_DECREF(key);
            page.more = 1;
            break;
        }
        Py_XSETREF(page.last, key);
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) == 0) {
            PyErr_SetString(PyExc_TypeError, "a conversation's key is a tuple ending in its id");
            break;
        }
        PyObject *id = PyObject_Str(PyTuple_GET_ITEM(key, PyTuple_GET_SIZE(key) - 1));
        if (id == NULL)
            break;
        PyObject *item = NULL;
        int handled = PyDict_Contains(threads_of, id);
        PyObject *conversation = handled ? NULL : entity_of(stored, Py_None, id);
        PyObject *head = conversation ? find_kept(kept, page.touch, conversation, &page.hits) : NULL;
        Py_XDECREF(conversation); /* the kept entry holds it */
        if (head != NULL) {
            PyObject *unread = PyDict_GetItemWithError(unread_by, id);
            int is_pinned = PyErr_Occurred() ? -1 : PySequence_Contains(pinned, id);
            int is_muted = is_pinned < 0 ? -1 : PySequence_Contains(muted, id);
            PyObject *flags = is_muted < 0 ? NULL
                                           : PyTuple_Pack(4, s_conversation, unread ? unread : zero,
                                                          is_pinned ? Py_True : Py_False, is_muted ? Py_True : Py_False);
            if (flags != NULL) {
                item = joined(head, PyDict_GetItemWithError(tails, flags));
                Py_DECREF(flags);
            }
            Py_DECREF(head);
        }
        if (handled < 0 || PyErr_Occurred()) {
            Py_XDECREF(item);
            failed = 1;
        } else {
            failed = put(&page, item, NULL, id) < 0;
        }
        Py_DECREF(id);
    }
    Py_XDECREF(iterator);
    return page_close(&page, failed);
}

static PyObject *messages(PyObject *self, PyObject *args) {
    PyObject *keys, *stop, *where, *parts, *kept, *read_at, *new_items, *is_inbound, *tails;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OnOO!OO!O!OOO!", &keys, &limit, &stop, &PyDict_Type, &where, &parts, &PyDict_Type,
                          &kept, &PyDict_Type, &read_at, &new_items, &is_inbound, &PyDict_Type, &tails))
        return NULL;
    Page page;
    PyObject *iterator = page_open(&page, kept) < 0 ? NULL : PyObject_GetIter(keys), *key;
    PyObject *reading_key = PyTuple_Pack(1, s_message);
    Unmarked unmarked;
    memset(&unmarked, 0, sizeof unmarked);
    int failed = iterator == NULL || reading_key == NULL;
    while (!failed && (key = PyIter_Next(iterator)) != NULL) {
        if (stop != Py_None) {
            PyObject *stops = PyObject_CallOneArg(stop, key);
            int stopped = stops == NULL ? -1 : PyObject_IsTrue(stops);
            Py_XDECREF(stops);
            if (stopped != 0) {
                Py_DECREF(key);
                break; /* an error, if any, is set */
            }
        }
        if (PyList_GET_SIZE(page.items) == limit) {
            Py_DECREF(key);
            page.more = 1;
            break;
        }
        PyObject *id = item_of(key);
        if (id == NULL) {
            Py_DECREF(key);
            break;
        }
        PyObject *item = NULL;
        PyObject *message = entity_of(where, parts, id);
        PyObject *head = message ? find_kept(kept, page.touch, message, &page.hits) : NULL;
        if (head != NULL) {
            PyObject *named = PyUnicode_Concat(s_message_prefix, id);
            if (named != NULL)
                item = with_reading(head, reading_key, named, message, is_inbound, 1, read_at, new_items, tails,
                                    &unmarked);
            Py_XDECREF(named);
            Py_DECREF(head);
        }
        Py_XDECREF(message);
        if (PyErr_Occurred()) {
            Py_XDECREF(item);
            failed = 1;
        } else {
            failed = put(&page, item, NULL, id) < 0;
        }
        Py_DECREF(id);
        Py_XSETREF(page.last, key);
    }
    Py_XDECREF(iterator);
    Py_XDECREF(reading_key);
    unmarked_clear(&unmarked);
    return page_close(&page, failed);
}

/* The next of three orders' keys in the inbox's order, (time, rank, key): the least of
 * the heads by their 12 bytes of time, then by rank. -1 when all are done. */
static int next_rank(PyObject *const orders[3], const Py_ssize_t at[3]) {
    int best = -1;
    const char *best_key = NULL;
    for (int rank = 0; rank < 3; rank++) {
        if (at[rank] >= PyTuple_GET_SIZE(orders[rank]))
            continue;
        const char *key = PyBytes_AS_STRING(PyTuple_GET_ITEM(orders[rank], at[rank]));
        if (best < 0 || memcmp(key, best_key, 12) < 0) {
            best = rank;
            best_key = key;
        }
    }
    return best;
}

/* The entry (time, rank, key) of a key, as the Python loop's entries are. */
static PyObject *entry_of(PyObject *key, int rank) {
    return Py_BuildValue("(y#iO)", PyBytes_AS_STRING(key), (Py_ssize_t)12, rank, key);
}

static PyObject *inbox(PyObject *self, PyObject *args) {
    PyObject *given, *stop, *kinds, *messages_where, *messages_parts, *comments_where, *comments_parts, *kept, *read_at,
        *new_items, *is_inbound, *is_own, *tails;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!nOO!O!OO!OO!O!OOOO!", &PyTuple_Type, &given, &limit, &stop, &PyTuple_Type, &kinds,
                          &PyDict_Type, &messages_where, &messages_parts, &PyDict_Type, &comments_where,
                          &comments_parts, &PyDict_Type, &kept, &PyDict_Type, &read_at, &new_items, &is_inbound,
                          &is_own, &PyDict_Type, &tails))
        return NULL;
    if (PyTuple_GET_SIZE(given) != 3 || PyTuple_GET_SIZE(kinds) != 3) {
        PyErr_SetString(PyExc_ValueError, "the inbox merges three orders");
        return NULL;
    }
    /* Each order's keys copied (tuples: what the loop calls, stop and is_inbound, cannot
     * change them under it), each kind's start of its read state's tail key and its items'
     * prefix ("<kind>:"). */
    PyObject *orders[3] = {NULL, NULL, NULL}, *reading_keys[3] = {NULL, NULL, NULL}, *prefixes[3] = {NULL, NULL, NULL};
    Py_ssize_t at[3] = {0, 0, 0};
    Unmarked unmarked[3];
    memset(unmarked, 0, sizeof unmarked);
    Page page;
    /* The last key taken and its rank: its entry is made once, at the end. */
    PyObject *last_key = NULL;
    int last_rank = 0;
    int failed = page_open(&page, kept) < 0, rank;
    for (rank = 0; rank < 3 && !failed; rank++) {
        PyObject *kind = PyTuple_GET_ITEM(kinds, rank);
        if (!PyList_Check(PyTuple_GET_ITEM(given, rank)) || !PyUnicode_Check(kind)) {
            PyErr_SetString(PyExc_TypeError, "each order is a list of its keys, each kind a str");
            break;
        }
        orders[rank] = PyList_AsTuple(PyTuple_GET_ITEM(given, rank));
        reading_keys[rank] = PyTuple_Pack(2, s_unified, kind);
        prefixes[rank] = PyUnicode_FromFormat("%U:", kind);
        if (orders[rank] == NULL || reading_keys[rank] == NULL || prefixes[rank] == NULL)
            break;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(orders[rank]); i++) {
            PyObject *key = PyTuple_GET_ITEM(orders[rank], i);
            if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) < 13) {
                PyErr_SetString(PyExc_ValueError, "not a time key");
                break;
            }
        }
        failed = PyErr_Occurred() != NULL;
    }
    failed = failed || PyErr_Occurred() != NULL;
    while (!failed && (rank = next_rank(orders, at)) >= 0) {
        PyObject *key = PyTuple_GET_ITEM(orders[rank], at[rank]++); /* borrowed: the copy holds it */
        if (stop != Py_None) {
            PyObject *entry = entry_of(key, rank);
            PyObject *stops = entry == NULL ? NULL : PyObject_CallOneArg(stop, entry);
            Py_XDECREF(entry);
            int stopped = stops == NULL ? -1 : PyObject_IsTrue(stops);
            Py_XDECREF(stops);
            if (stopped != 0)
                break; /* an error, if any, is set */
        }
        if (PyList_GET_SIZE(page.items) == limit) {
            page.more = 1;
            break;
        }
        last_key = key;
        last_rank = rank;
        PyObject *kind = PyTuple_GET_ITEM(kinds, rank);
        PyObject *id = item_of(key);
        if (id == NULL)
            break;
        int is_message = PyUnicode_Compare(kind, s_message) == 0;
        int is_comment = !is_message && PyUnicode_Compare(kind, s_comment) == 0;
        PyObject *item = NULL;
        PyObject *entity = is_message   ? entity_of(messages_where, messages_parts, id)
                           : is_comment ? entity_of(comments_where, comments_parts, id)
                                        : NULL;
        PyObject *head = entity ? find_kept(kept, page.touch, entity, &page.hits) : NULL;
        if (head != NULL) {
            PyObject *named = PyUnicode_Concat(prefixes[rank], id);
            if (named != NULL)
                item = with_reading(head, reading_keys[rank], named, entity, is_message ? is_inbound : is_own,
                                    is_message, read_at, new_items, tails, &unmarked[rank]);
            Py_XDECREF(named);
            Py_DECREF(head);
        }
        Py_XDECREF(entity);
        if (PyErr_Occurred()) {
            Py_XDECREF(item);
            failed = 1;
        } else {
            failed = put(&page, item, kind, id) < 0;
        }
        Py_DECREF(id);
    }
    if (!failed && !PyErr_Occurred() && last_key != NULL) {
        page.last = entry_of(last_key, last_rank); /* before the copies holding the key go */
        failed = page.last == NULL;
    }
    for (int r = 0; r < 3; r++) {
        Py_XDECREF(orders[r]);
        Py_XDECREF(reading_keys[r]);
        Py_XDECREF(prefixes[r]);
        unmarked_clear(&unmarked[r]);
    }
    return page_close(&page, failed);
}

static PyMethodDef methods[] = {
    {"inbox", inbox, METH_VARARGS,
     "inbox(orders, limit, stop, kinds, messages' where, parts, comments' where, parts, kept, read_at,\n"
     "      new_items, is_inbound, is_own, tails) -> (items, last entry, more, missing, hits)\n\n"
     "JsonViews.inbox_of's loop over three orders' first keys, merged: None in `items` where\n"
     "`missing` names (index, kind, id)."},
    {"conversations", conversations, METH_VARARGS,
     "conversations(keys, limit, threads_of, conversations, kept, unread_by, pinned, muted, tails)\n"
     "    -> (items, last key, more, missing, hits)\n\n"
     "JsonViews.conversations_of's loop: None in `items` where `missing` names (index, id)."},
    {"messages", messages, METH_VARARGS,
     "messages(keys, limit, stop, where, parts, kept, read_at, new_items, is_inbound, tails)\n"
     "    -> (items, last key, more, missing, hits)\n\n"
     "JsonViews.messages_of's loop: None in `items` where `missing` names (index, id)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_pages", .m_doc = "Pages joined from kept pieces (json_views.py).", .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pages(void) {
    s_conversation = PyUnicode_InternFromString("conversation");
    s_message = PyUnicode_InternFromString("message");
    s_comment = PyUnicode_InternFromString("comment");
    s_unified = PyUnicode_InternFromString("unified");
    s_move_to_end = PyUnicode_InternFromString("move_to_end");
    s_message_prefix = PyUnicode_InternFromString("message:");
    s_direction = PyUnicode_InternFromString("direction");
    zero = PyLong_FromLong(0);
    if (!s_conversation || !s_message || !s_comment || !s_unified || !s_move_to_end || !s_message_prefix || !s_direction ||
        !zero)
        return NULL;
    return PyModule_Create(&module);
}
