// sandbox-platform dashboard: live tables. No build step, no dependency.
// A <tbody data-live="/live/..." data-after="<newest id>"> asks the server every two
// seconds for rows newer than the newest it shows and puts them on top.
"use strict";

function liveUrl(base, after) {
  return base + (base.includes("?") ? "&" : "?") + "after=" + encodeURIComponent(after);
}

async function refresh(tbody) {
  const response = await fetch(liveUrl(tbody.dataset.live, tbody.dataset.after || "0"), {
    credentials: "same-origin",
    headers: { "Accept": "text/html" },
  });
  if (!response.ok) return;
  const html = (await response.text()).trim();
  if (!html) return;
  const empty = tbody.querySelector("tr:not([data-id])");
  if (empty) empty.remove();
  tbody.insertAdjacentHTML("afterbegin", html);
  const newest = tbody.querySelector("tr[data-id]");
  if (newest) tbody.dataset.after = newest.dataset.id;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tbody of document.querySelectorAll("tbody[data-live]")) {
    setInterval(() => refresh(tbody).catch(() => {}), 2000);
  }
});
