// Desktop notifications, with a short sound, for new customer messages and comments:
// opt-in (the header's switch, remembered in this browser) and only while the tab is
// hidden, since a person looking at the console sees them arrive.

import { t } from "./i18n.js";

const KEY = "imsync.notify";

export class Notifier {
  constructor(button) {
    this.button = button;
    this.audio = null;
    this.on = supported() && localStorage.getItem(KEY) === "on" && Notification.permission === "granted";
    button.hidden = !supported();
    button.addEventListener("click", () => this.toggle());
    this.render();
  }

  async toggle() {
    if (this.on) {
      this.on = false;
    } else {
      const permission = await Notification.requestPermission();
      if (permission !== "granted") {
        this.button.title = t("notify.denied");
        return;
      }
      this.on = true;
      this.sound(); // made during the click, so that the browser lets it play later
    }
    localStorage.setItem(KEY, this.on ? "on" : "off");
    this.render();
  }

  render() {
    this.button.setAttribute("aria-pressed", this.on ? "true" : "false");
    this.button.textContent = this.on ? t("notify.on") : t("notify.off");
    this.button.title = this.on ? t("notify.on.title") : t("notify.off.title");
  }

  // tag: one notification per item, however many tabs show it.
  notify(title, body, tag) {
    if (!this.on || document.visibilityState !== "hidden") return;
    try {
      new Notification(title, { body, tag });
    } catch (error) {
      return; // the browser withdrew the permission
    }
    this.beep();
  }

  sound() {
    if (!this.audio && window.AudioContext) this.audio = new AudioContext();
    return this.audio;
  }

  beep() {
    const context = this.sound();
    if (!context) return;
    const tone = context.createOscillator();
    const gain = context.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.06, context.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, context.currentTime + 0.25);
    tone.connect(gain).connect(context.destination);
    tone.start();
    tone.stop(context.currentTime + 0.25);
  }
}

function supported() {
  return "Notification" in window;
}
