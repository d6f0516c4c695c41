"""Test-set page: per-class accuracy, a clickable confusion matrix, and the images a model gets wrong.

Works without the data set: every figure comes from the model's record and its per-image predictions, and
the images from the shipped subset (weights/test_images.npz). When the test set is on disk, its images are
used instead (all of them, not just the subset), and the model can be re-evaluated on it.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from resnet_demo.data.cifar import find_cifar10
from resnet_demo.nets.paper import CLASSES, TABLE6_ERROR
from resnet_demo.store.evaluate import confusion_matrix, evaluate, load_predictions, per_class_accuracy
from resnet_demo.store.registry import ModelEntry, model_label
from resnet_demo.store.weights import WeightsError

from .. import pickers, state
from ..charts.style import CONFIG
from ..charts.testset import cell_from_selection, confusion_figure, per_class_bars

PAGE_SIZE = 48
CELL_MAX = 20
SCALE = 3  # 32 px -> 96 px, nearest neighbour so the pixels stay honest
GALLERY_SCALE = 4  # 128 px: room for a two-line caption (index and true class; prediction) of even height
SORTS = ("Most confident first", "Least confident first", "Test-set order")
ALL = "All classes"
Lookup = Callable[[int], "np.ndarray | None"]


@st.cache_resource(max_entries=16, show_spinner=False)
def _predictions(path: str, mtime: float) -> dict[str, np.ndarray] | None:
    preds = load_predictions(path)
    return None if preds is None else {k: preds[k] for k in ("labels", "pred", "probs")}


def predictions(entry: ModelEntry) -> dict[str, np.ndarray] | None:
    """{"labels","pred","probs"} for every test image, or None (not shipped, unreadable)."""
    if entry.predictions is None or not entry.predictions.is_file():
        return None
    try:
        return _predictions(str(entry.predictions), state.mtime(entry.predictions))
    except (OSError, ValueError, KeyError):
        return None


def image_lookup(preds: dict[str, np.ndarray]) -> tuple[Lookup | None, str]:
    """A test index -> 32x32x3 image function, and where the images come from.

    The local test set is used only if it is the one the predictions were made on (same labels); the shipped
    images only where their label agrees, so a model trained on other data never shows the wrong picture.
    """
    labels = preds["labels"]
    local = state.local_test_set()
    if local is not None and len(local) == len(labels) and np.array_equal(local.labels, labels):
        return (lambda i: local.images[i]), "the local test set"
    try:
        shipped = state.shipped_test_images()
    except (OSError, ValueError, KeyError):
        shipped = None
    if shipped:
        def lookup(i: int) -> np.ndarray | None:
            hit = shipped.get(int(i))
            return hit[0] if hit is not None and i < len(labels) and hit[1] == labels[i] else None

        return lookup, "the shipped subset of test images (every shipped model's mistakes and a small gallery)"
    return None, "nowhere: neither the test set nor the shipped test images are present"


def per_class(entry: ModelEntry) -> list[float | None] | None:
    """Per-class test accuracy in class order: the model's record, else its per-image predictions, summarised as
    evaluate summarises a test pass."""
    rec = entry.record.get("per_class")
    if not isinstance(rec, dict):
        preds = predictions(entry)
        if preds is None:
            return None
        rec = per_class_accuracy(confusion_matrix(preds["pred"], preds["labels"]))
    return [rec.get(c) for c in CLASSES]


def confusion(entry: ModelEntry, preds: dict | None) -> np.ndarray | None:
    rec = entry.record.get("confusion")
    if rec is not None:
        return np.asarray(rec, dtype=np.int64)
    return None if preds is None else confusion_matrix(preds["pred"], preds["labels"])


def render() -> None:
    st.title("Test set")
    st.caption("How a model does on the 10,000 CIFAR-10 test images it never trained on, and which ones it gets "
               "wrong. Everything here comes from the model's recorded evaluation, so it works without the data set.")
    every = state.models()
    entries = [e for e in every if e.is_cifar10]  # a taught model's test is its held-out images, not these
    if not entries:
        if every:
            st.info("The models here were taught classes of their own; this page is about CIFAR-10's test set.")
        else:
            state.no_models_message()
        return
    left, right = st.columns([1, 2])
    entry = pickers.model_picker(entries=entries, container=left)
    if entry is None:
        return
    by_name = {e.name: e for e in entries}
    others = [e.name for e in entries if e.name != entry.name]
    compare = right.multiselect("Compare per-class accuracy with", others, key="ts_compare",
                                format_func=lambda n: model_label(by_name[n]),
                                placeholder="other models (optional)")
    preds = predictions(entry)
    _summary(entry, preds)
    _per_class_section(entry, [by_name[n] for n in compare])
    conf = confusion(entry, preds)
    if conf is None:
        st.info(f"{entry.label} has no recorded confusion matrix and no per-image predictions, so there is "
                "nothing more to show here. Re-ship it (`python -m resnet_demo ship`) to record them.")
        return
    if preds is None:
        st.subheader("Confusion matrix")
        st.plotly_chart(confusion_figure(conf), key="ts_confusion_static")
        st.info(f"{entry.label} has no per-image predictions (its `.preds.npz` is missing), so the images behind "
                "each cell and the gallery of mistakes cannot be shown. Re-ship it to record them.")
        return
    lookup, source = image_lookup(preds)
    _confusion_section(conf, preds, lookup)
    _mistakes_section(preds, lookup, source)
    _reevaluate_section(entry)


def _summary(entry: ModelEntry, preds: dict | None) -> None:
    acc = entry.test_accuracy
    n = entry.record.get("test_images") or (len(preds["labels"]) if preds is not None else None)
    cols = st.columns(4)
    if acc is None:
        cols[0].metric("Test accuracy", "not recorded")
    else:
        tta = entry.record.get("test_accuracy_flip_tta")
        cols[0].metric("Test accuracy", f"{100 * acc:.2f}%",
                       help=None if tta is None else f"{100 * tta:.2f}% when averaged with the mirrored image "
                                                     "(not what the paper reports; shown for interest)")
        paper = TABLE6_ERROR.get(entry.arch.depth) if not entry.arch.plain and entry.arch.shortcut == "A" else None
        cols[1].metric("Test error", f"{100 * (1 - acc):.2f}%",
                       delta=None if paper is None else f"{100 * (1 - acc) - paper:+.2f} pts vs paper",
                       delta_color="inverse",
                       help=None if paper is None else f"The paper's Table 6 reports {paper}% for {entry.arch.label}.")
    if n:
        cols[2].metric("Test images", f"{n:,}")
    if preds is not None:
        cols[3].metric("Mistakes", f"{int((preds['pred'] != preds['labels']).sum()):,}")


def _per_class_section(entry: ModelEntry, compare: list[ModelEntry]) -> None:
    st.subheader("Per-class accuracy")
    series: dict[str, list[float | None]] = {}
    missing = []
    for e in [entry, *compare]:
        accs = per_class(e)
        if accs is None:
            missing.append(e.label)
        else:
            series[model_label(e)] = accs
    fresh = st.session_state.get("ts_fresh", {}).get(_fresh_key(entry))
    if fresh is not None:
        series[f"{entry.label} (re-evaluated now)"] = [fresh["per_class"].get(c) for c in CLASSES]
    if series:
        st.plotly_chart(per_class_bars(series), key="ts_per_class")
    if missing:
        st.info(f"No per-class accuracy recorded for: {', '.join(missing)}.")


def _on_cell_click() -> None:
    """Copy a clicked heatmap cell into the two selectboxes, which stay the single source of the choice."""
    event = st.session_state.get("ts_confusion")
    cell = cell_from_selection(event.selection.points if event is not None else [])
    if cell is not None:
        st.session_state["ts_true"], st.session_state["ts_pred"] = CLASSES[cell[0]], CLASSES[cell[1]]


def _confusion_section(conf: np.ndarray, preds: dict, lookup: Lookup | None) -> None:
    st.subheader("Confusion matrix")
    st.caption("Rows: the true class; columns: what the model predicted. Green cells are correct, red ones are "
               "mistakes (darker = a larger share of that class). **Click a cell** (or pick the two classes) "
               "to see its images.")
    if "ts_true" not in st.session_state or "ts_pred" not in st.session_state:
        off = np.where(np.eye(len(CLASSES), dtype=bool), -1, conf)
        t, p = np.unravel_index(int(off.argmax()), off.shape)  # the most common confusion is the best start
        st.session_state["ts_true"], st.session_state["ts_pred"] = CLASSES[t], CLASSES[p]
    chart, side = st.columns([1, 1], gap="large")
    with side:
        a, b = st.columns(2)
        true_c = a.selectbox("True class", CLASSES, key="ts_true")
        pred_c = b.selectbox("Predicted as", CLASSES, key="ts_pred")
    t, p = CLASSES.index(true_c), CLASSES.index(pred_c)
    with chart:
        st.plotly_chart(confusion_figure(conf, (t, p)), key="ts_confusion", on_select=_on_cell_click,
                        selection_mode="points", config=CONFIG)
    with side:
        idx = np.flatnonzero((preds["labels"] == t) & (preds["pred"] == p))
        idx = idx[np.argsort(-preds["probs"][idx, p].astype(np.float32), kind="stable")]
        verdict = "correctly" if t == p else f"as **{pred_c}**"
        st.markdown(f"**{len(idx):,}** test images of a **{true_c}** were classified {verdict}"
                    + (" (most confident first)." if len(idx) else "."))
        # Without the test set only the shipped images exist: pick the most confident of those, not the most
        # confident overall (the gallery's correct images are rarely among the top 20 of ~900).
        here = idx if lookup is None else np.array([i for i in idx if lookup(int(i)) is not None], dtype=idx.dtype)
        shown = _grid(here[:CELL_MAX], preds, lookup, SCALE, _cell_caption)
        if 0 < shown and len(here) < len(idx):
            st.caption(f"Showing {shown} of the {len(here):,} shipped images among these {len(idx):,} (every "
                       "mistake is shipped, but only a few correct ones); put the test set in `data/` to see "
                       "them all.")
        elif 0 < shown < len(idx):
            st.caption(f"Showing the first {shown} of {len(idx):,}"
                       + ("." if t == p else "; the gallery below pages through all the mistakes."))


def _mistakes_section(preds: dict, lookup: Lookup | None, source: str) -> None:
    st.subheader("Misclassified images")
    wrong = np.flatnonzero(preds["pred"] != preds["labels"])
    if not len(wrong):
        st.success("This model gets every test image right.")
        return
    a, b, c, d = st.columns([2, 2, 2, 1])
    true_f = a.selectbox("Only true class", (ALL, *CLASSES), key="ts_gallery_true")
    pred_f = b.selectbox("Only predicted as", (ALL, *CLASSES), key="ts_gallery_pred")
    order = c.selectbox("Order", SORTS, key="ts_gallery_sort")
    if true_f != ALL:
        wrong = wrong[preds["labels"][wrong] == CLASSES.index(true_f)]
    if pred_f != ALL:
        wrong = wrong[preds["pred"][wrong] == CLASSES.index(pred_f)]
    conf = preds["probs"][wrong, preds["pred"][wrong]].astype(np.float32)
    if order == SORTS[0]:
        wrong = wrong[np.argsort(-conf, kind="stable")]
    elif order == SORTS[1]:
        wrong = wrong[np.argsort(conf, kind="stable")]
    if not len(wrong):
        st.info("No mistakes match these filters.")
        return
    pages = -(-len(wrong) // PAGE_SIZE)
    if st.session_state.get("ts_page", 1) > pages:
        st.session_state["ts_page"] = 1
    page = d.number_input(f"Page (of {pages})", 1, pages, key="ts_page") if pages > 1 else 1
    start = (page - 1) * PAGE_SIZE
    st.caption(f"{len(wrong):,} mistakes; showing {start + 1}-{min(start + PAGE_SIZE, len(wrong))}. "
               f"Images from {source}. Caption: test index and true class, then → predicted (confidence).")
    _grid(wrong[start:start + PAGE_SIZE], preds, lookup, GALLERY_SCALE, _gallery_caption)


def _cell_caption(i: int, t: int, p: int, conf: float) -> str:
    return f"#{i} · {conf:.0f}%"  # the cell's heading names both classes


def _gallery_caption(i: int, t: int, p: int, conf: float) -> str:
    return f"#{i} {CLASSES[t]}  \n{'✓' if t == p else f'→ {CLASSES[p]}'} ({conf:.0f}%)"  # Markdown line break


def _grid(indices: np.ndarray, preds: dict, lookup: Lookup | None, scale: int,
          caption: Callable[[int, int, int, float], str]) -> int:
    """Thumbnails with one-size captions, so the grid's rows line up; returns how many could be shown."""
    if lookup is None:
        if len(indices):
            st.info("The images themselves are not available here (no test set on disk and no shipped "
                    "`test_images.npz`).")
        return 0
    imgs, caps = [], []
    for i in indices:
        img = lookup(int(i))
        if img is None:
            continue
        t, p = int(preds["labels"][i]), int(preds["pred"][i])
        imgs.append(np.repeat(np.repeat(img, scale, 0), scale, 1))
        caps.append(caption(int(i), t, p, 100 * float(preds["probs"][i, p])))
    if imgs:
        st.image(imgs, caption=caps, width=32 * scale, output_format="PNG")
    elif len(indices):
        st.info("None of these images is in the shipped subset; put the test set in `data/` to see them.")
    return len(imgs)


def _fresh_key(entry: ModelEntry) -> str:
    return f"{entry.name}@{entry.sha256 or state.mtime(entry.weights)}"


def _reevaluate_section(entry: ModelEntry) -> None:
    if find_cifar10() is None:
        return
    st.subheader("Re-evaluate")
    st.caption("The test set is on this machine, so the recorded numbers can be checked by running the model on "
               "it again now (single view, no flip averaging, as the paper reports).")
    fresh_all = st.session_state.setdefault("ts_fresh", {})
    if st.button(f"Re-evaluate {entry.label} on the local test set", key="ts_reevaluate"):
        split = state.local_test_set()
        if split is None:
            return
        try:
            model = state.load(entry)
        except WeightsError as e:
            state.problem(state.MODEL_UNREADABLE, e)
            return
        with st.spinner(f"Running {entry.label} on {len(split):,} test images..."):
            result = evaluate(model, split, "cpu")
        fresh_all[_fresh_key(entry)] = {k: result[k] for k in ("accuracy", "loss", "n", "per_class")}
        st.rerun()  # so the per-class chart above shows the fresh bars too
    fresh = fresh_all.get(_fresh_key(entry))
    if fresh is None:
        return
    rec = entry.record
    rows = {"test accuracy (%)": (rec.get("test_accuracy"), fresh["accuracy"], 100),
            "test loss": (rec.get("test_loss"), fresh["loss"], 1),
            "test images": (rec.get("test_images"), fresh["n"], 1)}
    table = {"": list(rows),
             "recorded": [_fmt(r, s) for r, _, s in rows.values()],
             "re-evaluated now": [_fmt(f, s) for _, f, s in rows.values()]}
    st.dataframe(table, hide_index=True, width="content")
    if rec.get("test_images") and rec["test_images"] != fresh["n"]:
        st.warning(f"The local test set has {fresh['n']:,} images but the record was measured on "
                   f"{rec['test_images']:,}: these are not the same test set, so the numbers differ.")


def _fmt(value, scale) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{scale * value:.{2 if scale == 100 else 4}f}"
