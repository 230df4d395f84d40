/* hyperhive agent page — what every module of the page shares (an ES module): the core's helpers
 * (window.hive), this page's agent NAME (from the URL the core routed, never from the HTML the
 * agent serves) and P, the page's model: the terminal and the last /api/state. agent.js fills in
 * P's hooks before anything calls them. */
export const hive = window.hive;
export const el = hive.el;
export const $ = (id) => document.getElementById(id);
export const NAME = (/^\/agent\/([a-z][a-z0-9-]{0,30})\//.exec(location.pathname) || [])[1] || "";
export const now = () => Date.now() / 1000;

export const P = {
  term: null, // the trail's hive.Terminal
  snap: null, // the last /api/state
  renderHeader: () => {},
  refreshState: async () => {},
};

/* a line of the page's own (not an event of the trail) */
export function note(text, level) {
  P.term.append({ kind: "ui", text, level });
}
