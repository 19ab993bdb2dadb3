// Postgate console: copy buttons, and times shown in the viewer's time
// zone (shown, and typed in the event search). No inline script anywhere
// (the CSP forbids it); the console works without this file too (times
// are then shown and read in UTC).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The search's since/until are typed in the viewer's zone: say which
  // (minutes east of UTC); without this script they are read as UTC.
  for (const tz of document.querySelectorAll("input[data-tz]")) {
    tz.value = String(-new Date().getTimezoneOffset());
  }
  for (const t of document.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) {
      t.title = t.textContent;
      t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
    }
  }
  for (const b of document.querySelectorAll("button[data-copy]")) {
    b.addEventListener("click", async () => {
      const el = document.getElementById(b.dataset.copy);
      if (!el) return;
      try {
        await navigator.clipboard.writeText(el.textContent.trim());
        b.textContent = "Copied";
      } catch {
        const r = document.createRange(); r.selectNodeContents(el);
        const s = window.getSelection(); s.removeAllRanges(); s.addRange(r);
        b.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { b.textContent = "Copy"; }, 2000);
    });
  }
});
