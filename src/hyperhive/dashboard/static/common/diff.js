/* hyperhive — the one diff renderer (an ES module), used by the dashboard's approval cards and
 * the agent page's Edit/Write rows. Lines become text nodes only (hive.el), classed `add`,
 * `del` or `hunk` inside <pre class="diff">, which both pages style.
 */

function diffPre(lines) {
  const el = window.hive.el;
  const pre = el("pre", { class: "diff" });
  for (const [cls, text] of lines) pre.appendChild(el("span", { class: cls }, text + "\n"));
  return pre;
}

/* a unified diff (git's output): +/- lines and @@ hunk headers marked, file headers plain */
export function unifiedDiff(text) {
  return diffPre(String(text).split("\n").map((line) => {
    if (line.startsWith("+") && !line.startsWith("+++")) return ["add", line];
    if (line.startsWith("-") && !line.startsWith("---")) return ["del", line];
    if (line.startsWith("@@")) return ["hunk", line];
    return [null, line];
  }));
}

/* an edit as a tool made it: every old line removed, every new line added, under the path */
export function editDiff(path, oldText, newText) {
  const oldLines = oldText ? String(oldText).split("\n") : [];
  const newLines = newText ? String(newText).split("\n") : [];
  const lines = oldLines.length ? [["hunk", "@@ " + path + " @@"]] : [];
  for (const l of oldLines) lines.push(["del", "- " + l]);
  for (const l of newLines) lines.push(["add", "+ " + l]);
  return { pre: diffPre(lines), removed: oldLines.length, added: newLines.length };
}
