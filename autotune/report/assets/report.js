// autotune HTML report: sortable tables and plot <-> table highlighting. No libraries.
"use strict";

function cellValue(row, index) {
  const cell = row.cells[index];
  return cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
}

function sortTable(table, index, numeric, ascending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellValue(a, index), y = cellValue(b, index);
    if (numeric) {
      // Missing figures ("" in data-v) sort last in both directions.
      if (x === "" || y === "") return (x === "") - (y === "");
      return ascending ? x - y : y - x;
    }
    return ascending ? x.localeCompare(y) : y.localeCompare(x);
  });
  rows.forEach((row) => body.appendChild(row));
}

function makeSortable(table) {
  const headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach((header, index) => {
    header.tabIndex = 0;
    const sort = () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach((other) => other.removeAttribute("aria-sort"));
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      sortTable(table, index, header.dataset.type === "num", ascending);
    };
    header.addEventListener("click", sort);
    header.addEventListener("keydown", (event) => { if (event.key === "Enter") sort(); });
  });
}

function linkHighlights(root) {
  // A plot point and its table rows share data-key: hovering one highlights the others.
  const toggle = (key, on) => root.querySelectorAll(`[data-key="${key}"]`)
    .forEach((element) => element.classList.toggle("hl", on));
  root.querySelectorAll("[data-key]").forEach((element) => {
    element.addEventListener("mouseenter", () => toggle(element.dataset.key, true));
    element.addEventListener("mouseleave", () => toggle(element.dataset.key, false));
  });
}

document.querySelectorAll("table.sortable").forEach(makeSortable);
linkHighlights(document);
