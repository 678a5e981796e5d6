import { authHeaders } from "./api.js";

// Live events as server-sent events from /api/im/events, read with fetch so that the
// console sees why a stream ended: a broken connection is resumed after the last event id
// (the gateway replays what was missed); a refusal to resume (the master restarted and
// no longer holds those events) asks for a full reload instead.

const OUT_OF_RANGE = 11;
const UNAUTHENTICATED = 16;

export class EventStream {
  constructor({ onEvent, onState, onLost }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onLost = onLost;
    this.lastId = "";
    this.attempt = 0;
    this.controller = null;
  }

  start() {
    this.run();
  }

  async run() {
    for (;;) {
      this.controller = new AbortController();
      try {
        const url = new URL("/api/im/events", window.location.origin);
        if (this.lastId) url.searchParams.set("after_event_id", this.lastId);
        const response = await fetch(url, { headers: { Accept: "text/event-stream", ...authHeaders() }, signal: this.controller.signal });
        if (!response.ok) {
          const envelope = await response.json().catch(() => ({}));
          if (envelope.status_code === UNAUTHENTICATED) {
            this.onState("locked");
            await new Promise((resolve) => setTimeout(resolve, 2000)); // until a key is given
            continue;
          }
          if (envelope.status_code === OUT_OF_RANGE) {
            // What happened since lastId is gone: start afresh and reload everything.
            this.lastId = "";
            this.onLost();
            continue;
          }
          throw new Error(envelope.status_msg || `HTTP ${response.status}`);
        }
        this.onState("live");
        this.attempt = 0;
        await this.read(response.body);
      } catch (error) {
        if (this.controller.signal.aborted) return;
      }
      this.onState("offline");
      this.attempt += 1;
      const delay = Math.min(10000, 250 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let id = "";
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("id:")) id = line.slice(3).trim();
      else if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (!data.length) return; // a comment (": stream open")
    const payload = JSON.parse(data.join("\n"));
    if (kind === "error") throw new Error(payload.message || "the event stream failed");
    if (id) this.lastId = id;
    this.onEvent(payload.event);
  }

  stop() {
    if (this.controller) this.controller.abort();
  }
}
