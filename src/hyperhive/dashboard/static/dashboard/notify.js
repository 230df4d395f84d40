/* hyperhive dashboard — browser notifications: opt-in, with a mute toggle (an ES module). */
import { $, h, S } from "./store.js";

/* ---------------- notifications (opt-in, mute toggle) ---------------- */
const notifyKey = "hh.notify";
function notifyOn() {
  return localStorage.getItem(notifyKey) === "on" && "Notification" in window && Notification.permission === "granted";
}
export function renderNotifyBtn() {
  const on = localStorage.getItem(notifyKey) === "on";
  $("notify-btn").textContent = on ? "◉ notify: on" : "○ notify: off";
}
$("notify-btn") && $("notify-btn").addEventListener("click", async () => {
  if (localStorage.getItem(notifyKey) === "on") {
    localStorage.setItem(notifyKey, "off");
  } else {
    if ("Notification" in window && Notification.permission !== "granted") {
      try { await Notification.requestPermission(); } catch (_e) { /* ignored */ }
    }
    localStorage.setItem(notifyKey, "on");
    if (!("Notification" in window) || Notification.permission !== "granted") {
      h.toast("the browser did not allow notifications", "info");
    }
  }
  renderNotifyBtn();
});
export function notify(title, body, tag) {
  if (!notifyOn() || !S.live) return;
  try { new Notification(title, { body: String(body || "").slice(0, 200), tag }); } catch (_e) { /* ignored */ }
}
