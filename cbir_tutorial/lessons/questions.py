"""Questions that make a learner think before running: predict, run, then see the explanation.

In a notebook, a question cell and a check cell::

    from cbir_tutorial.lessons import questions

    questions.nb01.p1.ask()     # prints the question and its choices
    my_prediction = ...         # your answer: "a", "b" or "c"

    # the check cell, after the cells that compute the answer
    questions.nb01.p1.check(my_prediction)                      # a question with one right answer
    questions.nb07.p1.check(my_prediction, actual=what_ran)     # one this run decides

``check`` prints ``✓`` or ``✗`` with the explanation (after any answer: the point is the reasoning), or
``not answered yet`` while the prediction is still ``...`` (so "Run all" goes on). In solutions mode
(``CBIR_TUTORIAL_SOLUTIONS=1``, the notebooks' test run) an unanswered question takes the right answer, so
the explanation is printed and the check is exercised. A wrong prediction never raises: it is a guess, not
code.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

from .exercises import Verdict, solutions_mode


@dataclass(frozen=True)
class Question:
    """A multiple-choice question. ``choices``: ``(letter, text)`` pairs; ``answer``: the right letter, or ``""``
    when the run decides (then :meth:`check` needs ``actual``); ``explanation``: printed after any answer."""

    name: str
    prompt: str
    choices: tuple[tuple[str, str], ...]
    explanation: str
    answer: str = ""

    @property
    def letters(self) -> list[str]:
        return [letter for letter, _ in self.choices]

    def text_of(self, letter: str) -> str:
        return dict(self.choices)[letter]

    def ask(self) -> None:
        """Print the question and its choices."""
        print(self.prompt)  # one line: the notebook, or the site, wraps it to its own width
        for letter, text in self.choices:
            print(f"  ({letter}) {text}")

    def check(self, choice, *, actual: str | None = None) -> Verdict:
        """Compare ``choice`` (a letter) with the right answer (``actual`` when the run decides); print the verdict
        and the explanation. True when right."""
        right = self.answer or actual
        if right not in self.letters:
            raise ValueError(f"{self.name}: the right answer {right!r} is not one of {self.letters}"
                             + ("" if self.answer else " (this question needs actual=, computed by the run)"))
        if choice is ... or choice is None or str(choice).strip() == "":
            if not solutions_mode():
                print(f"not answered yet: {self.name}: set my_prediction to one of "
                      f"{', '.join(repr(l) for l in self.letters)} in the question's cell, run it, then this cell.")
                return Verdict(False, answered=False)
            choice = right
        letter = str(choice).strip().strip("()").lower()
        if letter not in self.letters:
            print(f"✗ {self.name}: {choice!r} is not one of {', '.join(repr(l) for l in self.letters)}.")
            return Verdict(False)
        said = f"({letter}) {self.text_of(letter)}"
        if letter == right:
            print(f"✓ {self.name}: {said}.\n{self.explanation}")
            return Verdict(True)
        truth = "this run says" if not self.answer else "the answer is"
        print(f"✗ {self.name}: you said {said}; {truth} ({right}) {self.text_of(right)}.\n"
              f"{self.explanation}")
        return Verdict(False)


QUESTIONS: dict[str, Question] = {q.name: q for q in [
    Question(
        "chance_and_k",
        "A random ranking, over the queries of exercise 1: on average, which is higher, its precision@1 or its "
        "precision@10?",
        (("a", "precision@1: the first result is the likeliest to be relevant"),
         ("b", "precision@10: ten results have more chances to hold a relevant product"),
         ("c", "neither: they are equal on average")),
        "In a random ranking every rank holds a relevant product with the same probability, (n_c - 1) / (N - 1). "
        "Ten results do hold more relevant products than one (the intuition of b), but precision divides by K, "
        "so its expectation does not depend on K: one chance level serves precision@K for every K. Not so for "
        "MAP@K, whose chance level depends on K: on the sample it falls as K grows (its exact expectation at K = "
        "5, 10 and 20 is in section 4 of the benchmark results, the course's Benchmark results page); notebook 6 "
        "measures it at one K, with one random ranking.",
        answer="c"),
    Question(
        "pooling_shift",
        "Move the photo one pixel to the right: its vertical-edge map changes by some share (the next cell prints "
        "it). After 2x2 max pooling of both maps, the pooled map will change by...",
        (("a", "a larger share: pooling keeps only the strongest responses, so each change weighs more"),
         ("b", "about the same share (within a tenth of it): pooling moves nothing"),
         ("c", "a smaller share: a window's largest response often stays in that window")),
        "A one-pixel shift moves every response of the edge map one column, so where an edge is, the map changes "
        "a lot. A 2x2 window keeps only its largest response, and after the shift that response is often still "
        "inside the same window (it moved one column, and a window is two wide), so the pooled value stays; it "
        "changes where the largest response crosses into the next window. A 4x4 window usually changes less still "
        "(its line above). Pooling makes a map nearly invariant to small shifts (Goodfellow, Bengio and "
        "Courville, Deep Learning, section 9.3), not to large ones: move the photo by a whole window and every "
        "maximum moves with it."),
    Question(
        "silenced_branch",
        "A residual block outputs relu(F(x) + x). Set the scale and the shift (gamma and beta) of the last batch "
        "normalisation of its branch F to zero, so that F(x) = 0 for every x. For the random x of the next cell, "
        "drawn from a normal distribution (about half of its values negative), the block will output...",
        (("a", "zeros everywhere: the branch is silenced"),
         ("b", "x itself, unchanged"),
         ("c", "relu(x): x with its negative values set to 0")),
        "With F(x) = 0 the block computes relu(0 + x) = relu(x): the skip connection still carries x round the "
        "silenced branch, and the block's last ReLU sets its negative values to 0. In ResNet50 a block's input "
        "comes out of a ReLU (the previous block's last one, or for the first block the stem's, max-pooled), so "
        "it is never negative: there a silenced identity block passes its input through unchanged, answer (b). "
        "Zeroing that gamma alone is also a way to initialise ResNets (Goyal et al. 2017): each residual block "
        "then starts as its shortcut alone; Keras' ResNet50 does not.",
        answer="c"),
    Question(
        "threshold_score",
        "The original tutorial's score counts, among a query's top-K results, the share closer to it than a "
        "distance of 0.55, whatever the products are. EfficientNet-Lite0 with its ImageNet weights ranks far "
        "better than with random ones (MAP@K, above). Which of the two will the threshold score rate higher?",
        (("a", "the ImageNet network: more of its results are the right kind of product"),
         ("b", "neither: the two within 0.02 of each other"),
         ("c", "the untrained network")),
        "The score looks at how close the results are, never at whether they are the right kind of product, and "
        "how close a network's results sit depends on how spread out its features are. The table's last two "
        "columns show this run's spread: the text below reads them."),
    Question(
        "untrained_ratio",
        "Both networks give unit vectors, so their distances share the range 0-2; but an untrained network's "
        "vectors can all point nearly the same way, making all its distances small, which alone says nothing "
        "about its ranking: that depends only on which distances are smaller. The ratio below does not depend "
        "on their size either: the distance between the two products of the same category divided by the "
        "shorter distance from one of them to the third product (under 1: the pair is closer). Through the same "
        "architecture with random, untrained weights, the three photos' ratio will be...",
        (("a", "about the same as with the ImageNet weights (within 0.05): any deep network groups products"),
         ("b", "higher than with the ImageNet weights: without training, the category shows less"),
         ("c", "lower than with the ImageNet weights: random features separate the pair even better")),
        "Random convolutions probably keep much of the colour and silhouette, so an untrained network can still "
        "put two similar photos closer; ImageNet training adds what kinds of object look like, which should show "
        "as a lower ratio. The ratio, like a ranking and like the MAP@K of notebook 6, does not change when every "
        "distance is multiplied by the same factor: it compares the distances, whatever their size."),
    Question(
        "precision_at_double_k",
        "The explorer's query shows its top K results (K = 10 with the defaults). Double K (the next cell slides "
        "it for you): its precision@K will...",
        (("a", "rise"), ("b", "fall"), ("c", "stay the same")),
        "Precision@K is the share of relevant products among the first K results. The added results lie further "
        "from the query, so they tend to share its category less often than the first ones: precision@K usually "
        "falls as K grows. Not always: a query whose nearest results are another kind of product can gain, and "
        "one whose category holds many close look-alikes can stay at 1. And precision@K can never exceed R/K, "
        "R being the number of other products in the query's category: once K passes R, that ceiling falls with K "
        "whatever the ranking. AP@K (notebook 6) divides by min(K, R) instead, and can rise as K grows."),
    Question(
        "index_vs_loop",
        "One query at a time, on 20,000 products: the index computes the same distances as the original tutorial's "
        "loop over a dictionary, all at once in one matrix-vector product. How many times faster than the loop "
        "will it be on this machine?",
        (("a", "less than 3 times: the arithmetic is the same"),
         ("b", "3 to 30 times"),
         ("c", "more than 30 times")),
        "The loop pays Python's overhead for every product (a function call, a small array, a dictionary entry), "
        "the index none; but one query must still read the whole feature matrix, and no code can beat that read "
        "by much (the third factor printed compares the two). In two runs of the benchmark results' "
        "section 2 (the course's Benchmark results page; a 2-core machine, 10,000 x 2048, numpy's "
        "BLAS on its default threads) the index was 12-17 times faster "
        "than the loop for one query, the factor moving with the loop's own time; many queries at once (batches of "
        "64) share each read of the matrix, and went 84-116 times faster than the loop. This notebook measures "
        "another setup (20,000 rows of the backbone's width, one BLAS thread, 20 queries at once), so its own "
        "factors, printed above, can be lower."),
    Question(
        "head_on_unseen",
        "The projection head is trained with the labels of half of the categories that have 4 or more products "
        "(the smaller ones take no part). On the categories it never saw, its MAP@10 against the backbone's own "
        "features will be...",
        (("a", "higher: it learned what makes products of one category alike"),
         ("b", "about the same (within 0.01)"),
         ("c", "lower: it learned to tell apart the categories it was shown")),
        "The supervised contrastive loss pulls together the products of each category it is shown and keeps what "
        "separates those categories; it has no reason to keep what separates the others, so it can squeeze those "
        "directions out. On the whole sample "
        "(the benchmark results' section 4b, on the course's Benchmark results page) the head "
        "gained 0.06 MAP@10 on held-out products of the seen categories "
        "and lost 0.065 on the unseen ones. A catalogue keeps getting categories no label has described yet, so "
        "the unseen row is the one to trust; notebook 10 fine-tunes the backbone's last blocks and asks the same "
        "question."),
    Question(
        "ivf_cost",
        "An IVF index cuts N vectors into nlist lists; a query reads the nprobe lists whose centroids are nearest "
        "to it. About how many vectors does one query compare itself with?",
        (("a", "nprobe x N / nlist: the rows of the lists it reads"),
         ("b", "nlist + nprobe x N / nlist: every centroid, then the rows of the lists it reads"),
         ("c", "N / nprobe")),
        "To know which lists are nearest, the query is first compared with all nlist centroids (a flat scan), then "
        "with the rows of the nprobe lists it picked, about N / nlist each. With nlist = 4 sqrt(N) both terms grow "
        "like sqrt(N). Under the cap nlist = N // 39 (default_nlist, for small galleries) the lists hold about 39 "
        "rows each, so the rows read stay near 39 x nprobe, but the centroid scan, N / 39, grows like N itself. "
        "The growth table's vectors compared columns estimate them at each gallery size (lists of equal size "
        "assumed).",
        answer="b"),
    Question(
        "forgetting",
        "The trained model alone (fusion weight w = 1) searches the categories held out of its training. Against "
        "the frozen ImageNet features (w = 0), its MAP@k (k of the parameters cell, 10 by default) on those unseen "
        "categories will be...",
        (("a", "higher: what it learned about fashion carries over to new kinds of product"),
         ("b", "about the same (within 0.01)"),
         ("c", "lower: it learned to tell apart the categories it was shown, and lost some of the rest")),
        "Training (the probe's head, and a fine-tuned epoch when one is kept) moves the embedding towards what "
        "separates the training categories; nothing in the loss keeps "
        "what separates the others. Whether that costs the unseen categories depends on the catalogue and the run, "
        "which is why the trainer measures it on categories held out of training and fuses the trained embedding "
        "with the frozen features at the weight that does not forget (the benchmark results' section 8, on the "
        "course's Benchmark results page, measures "
        "it at the CLI's CPU settings). The answer is this run's: over a few held-out products one query moves "
        "the MAP by up to 1/n (the cell prints n)."),
]}

#: Each notebook's questions, in the order they appear: ``questions.nb07.p1``.
LESSONS: dict[str, list[str]] = {
    "nb01": ["chance_and_k"],
    "nb02": ["pooling_shift"],
    "nb03": ["untrained_ratio"],
    "nb04": ["silenced_branch"],
    "nb05": ["index_vs_loop"],
    "nb06": ["threshold_score"],
    "nb07": ["precision_at_double_k"],
    "nb08": ["head_on_unseen"],
    "nb09": ["ivf_cost"],
    "nb10": ["forgetting"],
}
for _lesson, _names in LESSONS.items():
    globals()[_lesson] = types.SimpleNamespace(**{f"p{i}": QUESTIONS[n] for i, n in enumerate(_names, start=1)})
