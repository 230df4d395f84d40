/* hyperhive agent page — one renderer per event kind of the trail, and the tool calls drawn per
 * tool (an ES module). Agent text only ever becomes text nodes (hive.el). */
import { editDiff } from "/static/common/diff.js";
import { el, hive, NAME, now } from "./page.js";

const COLLAPSE_CHARS = 600;
const COLLAPSE_LINES = 8;
const HH = "mcp__hyperhive__";
const toolNames = {};

/* ---- small builders ---------------------------------------------------------------------- */

function tsSpan(e) {
  return el("span", { class: "ts" }, e && e.ts ? hive.fmtClock(e.ts) : hive.fmtClock(now()));
}

function row(cls, e, ...children) {
  const attrs = { class: "hh-term-row " + cls };
  if (e && e.id) attrs.dataset = { id: String(e.id), kind: e.kind };
  return el("div", attrs, tsSpan(e), ...children);
}

function line(cls, ...children) {
  return el("span", { class: "line " + cls }, ...children);
}

function asText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    return value.map((b) => (b && typeof b === "object" ? (b.type === "text" ? String(b.text || "") : JSON.stringify(b)) : String(b))).join("\n");
  }
  try { return JSON.stringify(value); } catch (_e) { return String(value); }
}

export function oneLine(text, limit) {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > limit ? flat.slice(0, limit - 1) + "…" : flat;
}

/* a block of text, collapsed behind a <details> when it is long */
function maybeCollapsed(cls, prefix, text) {
  const lines = text.split("\n");
  if (text.length <= COLLAPSE_CHARS && lines.length <= COLLAPSE_LINES) {
    return line(cls, prefix, el("pre", {}, text));
  }
  const summary = prefix + oneLine(lines[0], 100) + "  (" + lines.length + " lines, " + text.length + " chars)";
  return el("details", { class: "line " + cls + " collapsed" }, el("summary", {}, summary), el("pre", {}, text));
}

function diffBlock(tool, path, oldText, newText) {
  const { pre, removed, added } = editDiff(path, oldText, newText);
  const stat = (removed ? "−" + removed + " " : "") + "+" + added;
  return el("details", { class: "line tool diff-tool", dataset: { tool } },
    el("summary", {}, tool + " ", el("span", { class: "arg" }, String(path || "?")), "  (" + stat + ")"), pre);
}

/* ---- tool calls, per tool ---------------------------------------------------------------- */

function toolUse(block) {
  const name = String(block.name || "?");
  const input = block.input && typeof block.input === "object" ? block.input : {};
  if (block.id) toolNames[block.id] = name;
  const tool = (label, arg, cls) => line("tool" + (cls ? " " + cls : ""), label, el("span", { class: "arg" }, String(arg)));
  switch (name) {
    case "Read": {
      let where = String(input.file_path || "?");
      if (input.offset || input.limit) where += " [" + (input.offset || 0) + (input.limit ? "+" + input.limit : "") + "]";
      return tool("Read ", where);
    }
    case "Bash":
      return tool("Bash $ ", input.command || "");
    case "Write":
      return diffBlock("Write", input.file_path, "", input.content);
    case "Edit":
      return diffBlock("Edit", input.file_path, input.old_string, input.new_string);
    case "MultiEdit": {
      const wrap = el("span", { class: "line" });
      for (const edit of input.edits || []) wrap.appendChild(diffBlock("Edit", input.file_path, edit.old_string, edit.new_string));
      return wrap;
    }
    case "Glob":
      return tool("Glob ", (input.pattern || "") + (input.path ? "  in " + input.path : ""));
    case "Grep":
      return tool("Grep ", (input.pattern || "") + (input.path ? "  in " + input.path : ""));
    case HH + "send":
      return line("tool send", "send → ", el("span", { class: "who" }, String(input.to || "?")), ": ",
        el("span", { class: "arg" }, String(input.body || "")));
    case HH + "recv":
      return tool("recv ", "wait " + (input.wait_seconds || 0) + " s");
    case HH + "nap":
      return tool("nap ", (input.seconds || "?") + " s");
    case HH + "ask":
      return tool("ask → " + (input.to || "operator") + ": ", input.question || "");
    default: {
      const short = name.startsWith(HH) ? name.slice(HH.length) : name;
      let args = "";
      try { args = JSON.stringify(input); } catch (_e) { args = String(input); }
      return tool(short + " ", oneLine(args, 300));
    }
  }
}

function toolResult(block) {
  const name = toolNames[block.tool_use_id] || "";
  const text = asText(block.content);
  const cls = "result" + (block.is_error ? " error" : "");
  const prefix = "↳ " + (block.is_error ? "error " : "") + (name ? (name.startsWith(HH) ? name.slice(HH.length) : name) + ": " : "");
  return maybeCollapsed(cls, prefix, text || "(no output)");
}

/* ---- one renderer per event kind (null hides the row) ------------------------------------ */

function renderStream(e) {
  const p = e.payload || {};
  const parts = [];
  switch (p.type) {
    case "assistant": {
      for (const b of Array.isArray(p.content) ? p.content : []) {
        if (!b || typeof b !== "object") continue;
        if (b.type === "text") { if (String(b.text || "").trim()) parts.push(line("agent-text", String(b.text))); }
        else if (b.type === "thinking") parts.push(maybeCollapsed("thinking", "✻ ", String(b.thinking || "")));
        else if (b.type === "tool_use" || b.type === "server_tool_use") parts.push(toolUse(b));
        else if (b.type === "tool_result") parts.push(toolResult(b));
        else parts.push(hive.jsonFallback(b));
      }
      if (p.error) parts.push(line("note warning", "model error: " + String(p.error)));
      break;
    }
    case "user": {
      if (typeof p.content === "string") { parts.push(line("result", oneLine(p.content, 200))); break; }
      for (const b of Array.isArray(p.content) ? p.content : []) {
        if (b && b.type === "tool_result") parts.push(toolResult(b));
        else if (b && b.type === "text") parts.push(line("result", oneLine(String(b.text || ""), 200)));
      }
      break;
    }
    case "system":
      if (p.subtype === "init") { // claude is up: one dim line, not the whole tool list
        const d = p.data && typeof p.data === "object" ? p.data : {};
        parts.push(line("state-line", "· claude up · session " + String(d.session_id || "?").slice(0, 8) +
          (d.model ? " · model " + d.model : "")));
        break;
      }
      parts.push(line("state-line", "system " + String(p.subtype || "") + " " + oneLine(asText(p.data), 200)));
      break;
    case "result":
      if (!p.is_error) return null; // turn_end carries the summary
      parts.push(line("note warning", "result: " + oneLine(asText(p.result || p.subtype), 300)));
      break;
    case "stream_event":
    case "rate_limit_event":
      return null;
    default:
      return row("stream unknown", e, hive.jsonFallback(e));
  }
  if (!parts.length) return null;
  return row("stream " + String(p.type), e, ...parts);
}

export const renderers = {
  turn_start(e) {
    const p = e.payload || {};
    const body = String(p.body === undefined ? "" : p.body);
    const extra = [];
    if (p.unread) extra.push(" · " + p.unread + " unread");
    if (p.redelivered) extra.push(" · redelivered");
    return row("turn-start in", e,
      line("", "▶ ", el("span", { class: "who" }, String(p.from || "?")), " → " + NAME + (p.id ? " #" + p.id : "") + extra.join("") + ":"),
      el("pre", { class: "body" }, body));
  },
  stream: renderStream,
  note(e) {
    const p = e.payload || {};
    return row("note-row", e, line("note " + String(p.level || ""), "· " + String(p.text || "")));
  },
  turn_end(e) {
    const p = e.payload || {};
    const u = p.usage || {};
    const bits = [];
    if (p.duration_ms !== undefined && p.duration_ms !== null) bits.push((p.duration_ms / 1000).toFixed(1) + " s");
    if (u.input_tokens !== undefined) bits.push((u.input_tokens || 0) + " in / " + (u.output_tokens || 0) + " out tok");
    if (p.cost_usd) bits.push("$" + Number(p.cost_usd).toFixed(4));
    if (p.model) bits.push(String(p.model));
    let cls = "ok", head = "■ turn done";
    if (p.cancelled) { cls = "cancelled"; head = "■ turn cancelled"; }
    else if (!p.ok) { cls = "fail"; head = "✗ turn failed"; }
    const text = head + (bits.length ? " · " + bits.join(" · ") : "") + (!p.ok && p.note ? " · " + oneLine(String(p.note), 300) : "");
    return row("turn-end-row", e, line("turn-end " + cls, text));
  },
  state_changed(e) {
    const p = e.payload || {};
    if (p.state === "napping") return row("state-row", e, line("state-line", "· napping until " + hive.fmtClock(p.until)));
    if (p.state === "compacting") return row("state-row", e, line("state-line", "· compacting ▣"));
    if (p.state === "needs_login") return row("state-row", e, line("note warning", "needs login: use the login panel above"));
    return null;
  },
  model_changed(e) {
    const p = e.payload || {};
    const why = p.source === "config" ? " (a deploy changed the config's model" + (p.previous_default ? " from " + p.previous_default : "") + ")" : "";
    const parts = [line("model-line", "· model → " + String(p.model || "default") + (p.override ? "" : " (the config's default)") + " from the next turn" + why)];
    if (p.hidden_by_override) parts.push(line("note warning", "the operator's override " + String(p.override) + " hides the config's model " + String(p.default)));
    if (p.warning) parts.push(line("note warning", String(p.warning)));
    return row("model-row", e, ...parts);
  },
  notes_compacted(e) {
    const p = e.payload || {};
    return row("note-row", e, line("note", "· notes compacted: " + hive.fmtBytes(p.before_bytes) + " → " +
      hive.fmtBytes(p.after_bytes) + " (previous kept at " + String(p.kept || "?") + ")"));
  },
  notes_compaction_failed(e) {
    const p = e.payload || {};
    return row("note-row", e, line("note warning", "notes compaction rejected, notes unchanged: " + String(p.reason || "?")));
  },
  ui(e) {
    const cls = "ui-note" + (e.level === "error" ? " error" : "");
    return row("ui-row", null, line(cls, el("pre", {}, String(e.text))));
  },
};
