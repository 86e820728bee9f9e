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
