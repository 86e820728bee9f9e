// A wide picture (a result grid, a table of photos, a benchmark chart) stays readable on a phone: it keeps
// 600 px and its container scrolls sideways, instead of shrinking to the screen's width; a line above it says so
// (a picture cut at the screen's edge looks whole otherwise).
const READABLE_PX = 600;
// The line above a box that scrolls sideways ("what": picture, table, printed table), once.
function cueBefore(box, what) {
  if (box.previousElementSibling && box.previousElementSibling.classList.contains("cbir-scroll-cue")) return;
  const cue = document.createElement("p");
  cue.className = "cbir-scroll-cue";
  cue.textContent = `Wider than the screen: scroll the ${what} sideways \u2192`;
  box.before(cue);
}
function keepReadable(img) {
  if (img.naturalWidth > READABLE_PX && img.getBoundingClientRect().width < READABLE_PX) {
    img.classList.add("cbir-wide");
    const box = document.createElement("div");  // the picture's own box: its cue sits right above it
    box.className = "cbir-scrolls";
    img.before(box);
    box.append(img);
    cueBefore(box, "picture");
  }
}
// A picture shown well below its own size (a grid of captioned photos on a phone or in the page's column) opens
// at full size in a new tab when clicked: its small print is readable there.
function linkFullSize(img) {
  if (img.closest("a") || img.naturalWidth <= 1.25 * img.getBoundingClientRect().width) return;
  const link = document.createElement("a");
  link.href = img.getAttribute("src");
  link.target = "_blank";
  link.className = "cbir-full-size";
  link.title = "Open the picture at full size";
  img.before(link);
  link.append(img);
}
// A table wider than its column (a catalogue's columns, a benchmark table) scrolls sideways in its box, with the
// same line above it: inside the theme's scrolling container (Markdown tables), else in a box of its own, so that
// the text around it keeps the screen's width.
function cueWideTable(table) {
  let box = table.parentElement;
  if (table.scrollWidth <= box.clientWidth + 1) return;
  if (!box.classList.contains("pst-scrollable-table-container") && !box.classList.contains("cbir-scrolls")) {
    box = document.createElement("div");
    table.before(box);
    box.append(table);
  }
  box.classList.add("cbir-scrolls");
  cueBefore(box, "table");
}
// Printed output wider than its box: sentences (a question, a check's verdict, a training log) wrap, so that a
// phone shows them whole; the lines of a printed table (a model summary, aligned columns) keep their columns and
// scroll under the same cue, and the sentences printed around such a table still wrap. Box-drawing characters make
// a table, except the horizontal lines alone: a Keras progress bar (━━━━) is a sentence.
const TABLE_DRAWING = /[\u2502-\u257f]/;
function tableLine(line) {
  return TABLE_DRAWING.test(line) || /\S {2,}[^\s\]]/.test(line);  // not numpy's padding before a "]"
}
// The pre's content as one span per line, its nodes moved in order (a coloured part holding a line break stays in
// the line where it starts).
function lineSpans(pre) {
  const lines = [document.createElement("span")];
  for (const node of [...pre.childNodes]) {
    if (node.nodeType !== Node.TEXT_NODE) {
      lines[lines.length - 1].append(node);
      continue;
    }
    const parts = node.textContent.split("\n");
    parts.forEach((part, i) => {
      if (i > 0) {
        lines[lines.length - 1].append("\n");
        lines.push(document.createElement("span"));
      }
      if (part) lines[lines.length - 1].append(part);
    });
  }
  return lines;
}
function fitPrinted(pre) {
  if (pre.scrollWidth <= pre.clientWidth + 1) return;
  const lines = pre.textContent.split("\n");
  const table = lines.some((line) => TABLE_DRAWING.test(line))
    || lines.filter(tableLine).length >= Math.max(3, lines.length / 3);
  pre.classList.add("cbir-wrap");
  if (!table) return;
  const spans = lineSpans(pre);  // each table line keeps its columns, the sentences around them wrap
  for (const span of spans) {
    if (tableLine(span.textContent)) span.className = "cbir-keep";
  }
  pre.replaceChildren(...spans);
  if (pre.scrollWidth > pre.clientWidth + 1) cueBefore(pre, "printed table");
}
// A long code name in a prose table (`FaissIndex.set_search_options(nprobe=...)`) may break after a dot, an
// underscore, a slash, an opening parenthesis, a comma or an equals sign, as a reader would split it, so that
// the table fits a phone's screen instead of scrolling under every line.
function breakableNames(table) {
  for (const code of table.querySelectorAll("code.literal")) {
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    const texts = [];
    while (walker.nextNode()) texts.push(walker.currentNode);
    for (const text of texts) {
      const parts = text.textContent.split(/(?<=[._\/(,=])(?=.)/);
      if (parts.length < 2) continue;
      const pieces = [];
      parts.forEach((part, i) => {
        if (i > 0) pieces.push(document.createElement("wbr"));
        pieces.push(part);
      });
      text.replaceWith(...pieces);
    }
  }
}
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("article table")) {
    if (!table.closest(".cell_output")) breakableNames(table);
  }
  for (const pre of document.querySelectorAll("article .cell_output pre")) fitPrinted(pre);
  for (const img of document.querySelectorAll("article img")) {
    const fit = () => { keepReadable(img); if (img.closest(".cell_output")) linkFullSize(img); };
    if (img.complete) fit();
    else img.addEventListener("load", fit);
  }
  for (const table of document.querySelectorAll("article table")) cueWideTable(table);
});

// Search results (search.html): Sphinx's searchtools.js makes each result's snippet from the text of the fetched
// page's [role="main"] element, which this theme puts on its whole <main>: the article's tool bar (the theme
// switcher's "System Settings Light Dark", the download and full-screen buttons), the print-only table of
// contents and the previous/next links come before the chapter's own text, and a query's first match (the "k"
// of "MAP@K" in "Dark") lands in them. The snippet is made from the page's article alone, less a chapter's
// metadata block ("Authors: … Date created: … Description: …"), its "How this page was made" note and its folded
// install cell, the same on every chapter: a snippet starts with the chapter's own text.
function articleOnly(htmlString) {
  const page = new DOMParser().parseFromString(htmlString, "text/html");
  const main = page.querySelector('[role="main"]');
  const article = main && main.querySelector("article.bd-article");
  if (!article) return htmlString;  // another layout: as Sphinx reads it
  for (const paragraph of article.querySelectorAll("p")) {
    const first = paragraph.firstElementChild;
    if (first && first.tagName === "STRONG" && paragraph.firstChild === first && /^Authors?:$/.test(first.textContent.trim())) {
      paragraph.remove();
    }
  }
  for (const note of article.querySelectorAll(".admonition.note")) {
    if (note.textContent.includes("How this page was made")) note.remove();
  }
  // folded code (the install cell) and the fold buttons' labels ("Show code cell source"): not what a reader sees
  for (const folded of article.querySelectorAll("details.above-input, details > summary")) folded.remove();
  main.replaceChildren(article);
  return page.documentElement.outerHTML;
}
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;  // not the search page
  const pageText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => pageText(articleOnly(htmlString), anchor);
});

// The sidebar buttons of the article's header bar (the chapter list, the page's contents). sphinx-book-theme and
// pydata-sphinx-theme attach their handlers to the page's first `.primary-toggle` / `.secondary-toggle`, which
// is pydata's navbar button, hidden in this layout: the buttons a reader sees did nothing. A click on a visible
// one is passed to that first button, whose handlers open the drawer (phone) or hide the sidebar (desktop).
document.addEventListener("DOMContentLoaded", () => {
  for (const kind of ["primary-toggle", "secondary-toggle"]) {
    const handled = document.querySelector(`.${kind}`);
    if (!handled) continue;
    for (const button of document.querySelectorAll(`.bd-header-article .${kind}`)) {
      if (button === handled) continue;  // the themes' own button: it works already
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        handled.click();
      });
    }
  }
});

// On a phone the page's contents open in a drawer (a <dialog>) over the page: a tap on one of its links scrolls the
// page to that section behind it, and the drawer stayed open over two thirds of the screen. It closes on that tap,
// then the page goes to the section (closing a dialog gives the focus back to its button, at the top of the page).
document.addEventListener("click", (event) => {
  const link = event.target.closest("dialog[open] a[href^='#']");
  if (!link) return;
  const target = document.getElementById(decodeURIComponent(link.hash.slice(1)));
  link.closest("dialog").close();
  if (target) {
    event.preventDefault();
    history.pushState(null, "", link.hash);
    target.scrollIntoView();
  }
});

// A closed drawer gives the focus back to the button that opened it, and the button's tooltip ("Toggle secondary
// sidebar") then stays over the top bar: the focus leaves it once the drawer has closed.
document.addEventListener("close", (event) => {
  if (event.target.tagName === "DIALOG") setTimeout(() => document.activeElement?.blur(), 0);
}, true);  // "close" does not bubble: caught on its way down

// Search results list each page once, at its best-ranked entry (Sphinx lists a page again for each index entry or
// section that matches), and a one-letter term of the query (the "k" of "MAP@K", split at the "@") is searched
// but not highlighted: highlighting marks it inside every word of the snippets ("networ-k-s").
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || typeof Search._performSearch !== "function") return;  // not the search page
  const parse = Search._parseQuery;
  Search._parseQuery = (query) => {
    const parsed = parse(query);
    const highlight = parsed[3];
    if ([...highlight].some((term) => term.length > 1)) {
      for (const term of [...highlight]) if (term.length < 2) highlight.delete(term);
    }
    return parsed;
  };
  const perform = Search._performSearch;
  Search._performSearch = (...args) => {
    const results = perform(...args);  // shown from the last to the first
    const seen = new Set();
    const once = results.reverse().filter((result) => !seen.has(result[0]) && seen.add(result[0]));
    // an index entry's anchor is an empty mark: its page is linked whole, with a snippet of the page's text
    return once.map((result) => (result[6] === "index" ? [...result.slice(0, 2), "", ...result.slice(3)] : result))
      .reverse();
  };
});

// Printed output with inline colours (Keras's model summary, drawn by the rich library for a dark terminal) keeps
// a contrast of at least 4.5:1 (WCAG's AA level for text) with the box behind it, in either theme: a colour too
// pale on the light theme is moved towards black, one too dark on the dark theme towards white, as far as needed.
function rgbOf(colour) {
  const parts = (colour.match(/[\d.]+/g) || []).map(Number);
  return parts.length >= 3 ? { rgb: parts.slice(0, 3), alpha: parts.length > 3 ? parts[3] : 1 } : null;
}
function luminance(rgb) {
  const [r, g, b] = rgb.map((c) => {
    const v = c / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function contrast(a, b) {
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}
function backgroundOf(node) {
  for (let box = node; box; box = box.parentElement) {
    const colour = rgbOf(getComputedStyle(box).backgroundColor);
    if (colour && colour.alpha > 0) return colour.rgb;
  }
  return [255, 255, 255];
}
function readableColours() {
  for (const span of document.querySelectorAll('.cell_output span[style*="color"]')) {
    if (span.dataset.colour === undefined) span.dataset.colour = span.style.color;
    span.style.color = span.dataset.colour;
    const back = backgroundOf(span.parentElement);
    const ink = rgbOf(getComputedStyle(span).color);
    if (!ink || contrast(ink.rgb, back) >= 4.5) continue;
    const towards = luminance(back) > 0.18 ? [0, 0, 0] : [255, 255, 255];
    let mixed = ink.rgb;
    for (let step = 1; step <= 10 && contrast(mixed, back) < 4.5; step += 1) {
      mixed = ink.rgb.map((c, i) => Math.round(c + (towards[i] - c) * step / 10));
    }
    span.style.color = `rgb(${mixed.join(", ")})`;
  }
}
document.addEventListener("DOMContentLoaded", () => {
  readableColours();
  new MutationObserver(readableColours).observe(document.documentElement, { attributes: true,
                                                                             attributeFilter: ["data-theme"] });
});
