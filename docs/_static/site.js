// A wide picture (a result grid, a table of photos, a benchmark chart) stays readable on a phone: it keeps
// 600 px and its container scrolls sideways, instead of shrinking to the screen's width.
const READABLE_PX = 600;
function keepReadable(img) {
  if (img.naturalWidth > READABLE_PX && img.getBoundingClientRect().width < READABLE_PX) {
    img.classList.add("cbir-wide");
    img.parentElement.classList.add("cbir-scrolls");
  }
}
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll("article img")) {
    if (img.complete) keepReadable(img);
    else img.addEventListener("load", () => keepReadable(img));
  }
});

// Search results (search.html): Sphinx's searchtools.js makes each result's snippet from the text of the fetched
// page's [role="main"] element, which this theme puts on its whole <main>: the article's tool bar (the theme
// switcher's "System Settings Light Dark", the download and full-screen buttons), the print-only table of
// contents and the previous/next links come before the chapter's own text, and a query's first match (the "k"
// of "MAP@K" in "Dark") lands in them. The snippet is made from the page's article alone.
function articleOnly(htmlString) {
  const page = new DOMParser().parseFromString(htmlString, "text/html");
  const main = page.querySelector('[role="main"]');
  const article = main && main.querySelector("article.bd-article");
  if (!article) return htmlString;  // another layout: as Sphinx reads it
  main.replaceChildren(article);
  return page.documentElement.outerHTML;
}
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;  // not the search page
  const pageText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => pageText(articleOnly(htmlString), anchor);
});
