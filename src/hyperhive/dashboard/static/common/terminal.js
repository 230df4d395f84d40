/* hyperhive — the shared terminal/log pane (dashboard MESS4GE FL0W, per-agent live log).
 *
 *   const term = new hive.Terminal(container, {
 *     renderers: { kind: (event, term) => Node | string | null },  // null hides the row
 *     kindOf: (event) => event.kind,      // how to pick the renderer
 *     maxRows: 2000,                      // oldest rows are dropped past this
 *     height: "420px",                    // optional max-height of the scroll area
 *   });
 *   term.append(event)  term.appendMany(events)  term.prepend(events)  term.clear()
 *
 * Sticky bottom: new rows follow only when the view is already at the bottom; otherwise a
 * "↓ N new" pill counts them and jumps down on click. Unknown kinds render as a JSON dump.
 * Renderers must build text with textContent / hive.el — never innerHTML.
 */
(function () {
  "use strict";
  const hive = window.hive || (window.hive = {});

  function jsonFallback(event) {
    const pre = document.createElement("pre");
    pre.className = "json";
    let text;
    try { text = JSON.stringify(event); } catch (_e) { text = String(event); }
    pre.textContent = text;
    return pre;
  }

  class Terminal {
    constructor(container, opts) {
      const o = opts || {};
      this.renderers = Object.assign({}, o.renderers || {});
      this.kindOf = o.kindOf || ((e) => (e && e.kind) || "");
      this.maxRows = o.maxRows || 2000;
      this.unseen = 0;
      this.root = document.createElement("div");
      this.root.className = "hh-term";
      this.scroll = document.createElement("div");
      this.scroll.className = "hh-term-scroll";
      if (o.height) this.scroll.style.maxHeight = o.height;
      this.pill = document.createElement("button");
      this.pill.type = "button";
      this.pill.className = "hh-term-pill hidden";
      this.pill.addEventListener("click", () => this.scrollToBottom());
      this.root.append(this.scroll, this.pill);
      container.appendChild(this.root);
      this.scroll.addEventListener("scroll", () => {
        if (this.atBottom()) this._seen();
      });
    }

    atBottom() {
      const s = this.scroll;
      return s.scrollHeight - s.scrollTop - s.clientHeight < 8;
    }

    scrollToBottom() {
      this.scroll.scrollTop = this.scroll.scrollHeight;
      this._seen();
    }

    _seen() {
      this.unseen = 0;
      this.pill.classList.add("hidden");
    }

    _row(event) {
      const render = this.renderers[this.kindOf(event)] || this.renderers["*"] || jsonFallback;
      let out;
      try { out = render(event, this); } catch (err) { out = jsonFallback(event); }
      if (out === null || out === undefined) return null;
      if (out instanceof Node && out.classList && out.classList.contains("hh-term-row")) return out;
      const row = document.createElement("div");
      row.className = "hh-term-row";
      row.appendChild(out instanceof Node ? out : document.createTextNode(String(out)));
      return row;
    }

    _trim() {
      while (this.scroll.childElementCount > this.maxRows) this.scroll.firstElementChild.remove();
    }

    appendMany(events) {
      const follow = this.atBottom();
      let added = 0;
      const frag = document.createDocumentFragment();
      for (const e of events) {
        const row = this._row(e);
        if (row) { frag.appendChild(row); added++; }
      }
      if (!added) return 0;
      this.scroll.appendChild(frag);
      this._trim();
      if (follow) {
        this.scroll.scrollTop = this.scroll.scrollHeight;
      } else {
        this.unseen += added;
        this.pill.textContent = "↓ " + this.unseen + " new";
        this.pill.classList.remove("hidden");
      }
      return added;
    }

    append(event) { return this.appendMany([event]); }

    /* history backfill: older rows go on top without moving the view */
    prepend(events) {
      const s = this.scroll;
      const fromBottom = s.scrollHeight - s.scrollTop;
      const frag = document.createDocumentFragment();
      for (const e of events) {
        const row = this._row(e);
        if (row) frag.appendChild(row);
      }
      s.insertBefore(frag, s.firstChild);
      s.scrollTop = s.scrollHeight - fromBottom;
    }

    clear() {
      this.scroll.replaceChildren();
      this._seen();
    }
  }

  hive.Terminal = Terminal;
  hive.jsonFallback = jsonFallback;
})();
