// Who else is writing in a conversation: each presence ends by itself at its expire_time
// unless said again (the master does not keep presences).

export class Presence {
  constructor(onChange) {
    this.onChange = onChange;
    this.until = new Map(); // agent -> expiry (ms)
    this.timer = null;
  }

  take(presence) {
    if (presence.is_typing) this.until.set(presence.agent, Date.parse(presence.expire_time) || Date.now() + 8000);
    else this.until.delete(presence.agent);
    this.schedule();
    this.onChange();
  }

  agents() {
    const now = Date.now();
    return [...this.until.entries()].filter(([, until]) => until > now).map(([agent]) => agent).sort();
  }

  schedule() {
    clearTimeout(this.timer);
    const next = Math.min(...this.until.values());
    if (!Number.isFinite(next)) return;
    this.timer = setTimeout(() => {
      const now = Date.now();
      for (const [agent, until] of this.until) if (until <= now) this.until.delete(agent);
      this.schedule();
      this.onChange();
    }, Math.max(50, next - Date.now()));
  }

  stop() {
    clearTimeout(this.timer);
  }
}
