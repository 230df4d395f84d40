/* hyperhive agent page — the prompt under the trail: a message to the agent as the operator, or a
 * slash command; tab completes (an ES module). */
import { el, hive, NAME, note, P } from "./page.js";

const COMMANDS = [
  ["/help", "list the commands"],
  ["/clear", "clear this view (the trail is kept: reload brings it back)"],
  ["/model ", "/model <name> — use <name> from the next turn; /model default clears the override"],
  ["/compact", "compact the current session"],
  ["/compact-notes", "rewrite /state/notes.md shorter now (the previous version is kept)"],
  ["/cancel", "interrupt the turn in flight, or end a nap"],
  ["/new-session", "start a fresh claude session on the next turn"],
];

/* ---- the prompt and slash commands -------------------------------------------------------- */

export async function control(path, data) {
  const r = await hive.post(path, data || {});
  if (r.state) { P.snap = r.state; P.renderHeader(); }
  return r.result;
}

async function slash(text) {
  const [cmd, ...rest] = text.trim().split(/\s+/);
  const arg = rest.join(" ");
  try {
    switch (cmd) {
      case "/help":
        note(COMMANDS.map(([c, h]) => c.trim().padEnd(13) + " " + h).join("\n") +
          "\nenter sends a message to " + NAME + " as the operator · shift+enter adds a newline · tab completes");
        return;
      case "/clear":
        P.term.clear();
        note("view cleared — the trail is kept (reload to see it again)");
        return;
      case "/model": {
        if (!arg) {
          note("model " + (P.snap && P.snap.model) + " (default " + (P.snap && P.snap.model_default) + "). usage: /model <name>, /model default");
          return;
        }
        const result = await control("api/model", { model: arg === "default" ? "" : arg });
        note(String(result));
        return;
      }
      case "/compact":
        note("compacting…");
        note(String(await control("api/compact")));
        return;
      case "/compact-notes":
        note("compacting the notes…");
        note(String(await control("api/compact-notes")));
        return;
      case "/cancel":
        note(String(await control("api/cancel")));
        return;
      case "/new-session":
        note(String(await control("api/new-session")));
        return;
      default:
        note("unknown command " + cmd + " — try /help", "error");
    }
  } catch (err) {
    note(cmd + ": " + (err && err.message ? err.message : String(err)), "error");
  }
}

async function sendMessage(body) {
  try {
    const r = await hive.post("/api/send", { to: NAME, body });
    const ids = (r && (r.ids || (r.id ? [r.id] : []))) || [];
    note("→ sent to " + NAME + (ids.length ? " as message #" + ids.join(", #") : ""));
    return true;
  } catch (err) {
    note("send failed: " + (err && err.message ? err.message : String(err)), "error");
    return false;
  }
}

function complete(input) {
  const value = input.value;
  if (!value.startsWith("/")) return false;
  if (/\s/.test(value)) return true; // a command with its argument: nothing to complete
  const matches = COMMANDS.map(([c]) => c).filter((c) => c.startsWith(value) && c !== value);
  if (matches.length === 1) {
    input.value = matches[0];
  } else if (matches.length > 1) {
    let prefix = matches[0];
    for (const m of matches) while (!m.startsWith(prefix)) prefix = prefix.slice(0, -1);
    if (prefix.length > value.length) input.value = prefix;
    else note(matches.map((m) => m.trim()).join("  "));
  }
  return true;
}

export function buildPrompt() {
  const input = el("textarea", { id: "term-input", rows: "1", spellcheck: "false", autocomplete: "off",
    placeholder: "message " + NAME + " as the operator, or /help", "aria-label": "message or slash command" });
  const wrap = el("div", { class: "term-prompt" }, el("span", { class: "caret" }, "›"), input,
    el("span", { class: "hint" }, "enter send · shift+enter newline · tab complete"));
  P.term.root.appendChild(wrap);
  const grow = () => { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight, 160) + "px"; };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", async (ev) => {
    if (ev.key === "Tab" && !ev.shiftKey) {
      if (complete(input)) ev.preventDefault();
      return;
    }
    if (ev.key !== "Enter" || ev.shiftKey || ev.isComposing) return;
    ev.preventDefault();
    const text = input.value;
    if (!text.trim() || input.dataset.busy) return;
    input.dataset.busy = "1";
    try {
      if (text.trim().startsWith("/")) {
        input.value = "";
        grow();
        await slash(text);
      } else if (await sendMessage(text)) {
        input.value = "";
        grow();
      }
    } finally {
      delete input.dataset.busy;
    }
    P.term.scrollToBottom();
  });
  return input;
}
