"""Fool it page: change a picture by less than a person can see, and the network calls it something else.

Pick an image and a model, an attack (FGSM, one step; PGD, several) and its size ε, and either "anything but its
answer" or "make it say X". The page shows the original, the change (amplified, with its scale), the attacked
image at true scale and both top fives; then, one view at a time (?view=), the smallest ε that fools this and
other models, what the network looks at before and after, where the attacked image lands among the test images,
and the shipped table of accuracy under attack by depth.

Nothing here changes what the server keeps, so every student may attack. Every setting is checked again on the
server before any work (ε 0..16, at most MAX_STEPS PGD steps, a step size in (0, 1] of ε, a class 0..9, models
from the list on offer, at most MAX_COMPARE others in the search), which bounds what one click can cost.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from resnet_demo.data.images import upscale
from resnet_demo.interpret import attacks, explain, robustness
from resnet_demo.interpret.attacks import ATTACKS, EPS_MAX, AttackError, Fooled, Settings
from resnet_demo.interpret.explain import METHODS
from resnet_demo.nets.paper import CLASSES
from resnet_demo.store.registry import ModelEntry, model_label

from .. import inputs, pickers, state
from ..charts.fool import landing_figure, robustness_figure, smallest_eps_figure
from ..charts.predictions import top5_figure
from ..charts.style import CONFIG
from ..plain import plain

SIZE = 256  # 32x32 drawn 8x
MAX_STEPS = 20  # PGD steps a page may ask for (the CLI allows more)
MAX_COMPARE = 3  # other models in one smallest-eps search, besides the chosen one
FRACTIONS = (0.5, 0.25, 0.125, 0.1)  # PGD step size, as a fraction of eps
CLOUD_PER_CLASS = 60  # test images of each class scored for "Where it lands"
ANYTHING = "anything"
VIEWS = {"smallest": "Smallest ε, model by model", "explain": "What it looks at", "lands": "Where it lands",
         "depth": "Does depth help?"}
_RESULTS = "fool.results"  # session cache: attacks, searches and maps already computed


def _remembered(key: tuple, compute, limit: int = 48):
    cache: dict = st.session_state.setdefault(_RESULTS, {})
    if key not in cache:
        cache[key] = compute()
        while len(cache) > limit:
            cache.pop(next(iter(cache)))
    return cache[key]


# --- the choices -------------------------------------------------------------------------------------------

def _from_url(key: str, param: str, options: list, default):
    """Seed a widget's value from the URL once, falling back to the default for anything not offered."""
    if st.session_state.get(key) not in options:
        wanted = state.query_param(param)
        st.session_state[key] = next((o for o in options if str(o) == wanted), default)


def _attack_picker(container) -> str:
    _from_url("fool_attack", "attack", list(ATTACKS), "fgsm")
    attack = container.selectbox("Attack", list(ATTACKS), key="fool_attack", format_func=lambda a: {
        "fgsm": "FGSM: one step along the gradient", "pgd": "PGD: several small steps"}[a])
    state.set_query_param("attack", attack)
    return attack


def _goal_picker(container) -> int | None:
    options = [ANYTHING, *CLASSES]
    if st.session_state.get("fool_goal") not in options:
        st.session_state["fool_goal"] = ANYTHING
    goal = container.selectbox("Goal", options, key="fool_goal", format_func=lambda g: (
        "Make it say anything else" if g == ANYTHING else f"Make it say “{g}”"),
        help="Untargeted: push the image away from the network's own answer. Targeted: towards one class.")
    return None if goal == ANYTHING else CLASSES.index(goal)


def _settings(attack: str, target: int | None) -> Settings:
    _from_url("fool_eps", "eps", list(range(EPS_MAX + 1)), 4)
    eps = st.slider("ε: the largest change of any pixel, in 1/255", 0, EPS_MAX, key="fool_eps",
                    help="Pixel values run from 0 to 255; ε = 4 lets every value move by at most 4 either way. "
                         "Few people notice below about 8.")
    state.set_query_param("eps", str(eps))
    steps, fraction = attacks.DEFAULT_STEPS, attacks.DEFAULT_STEP_FRACTION
    if attack == "pgd":
        steps = st.slider("PGD: steps", 1, MAX_STEPS, attacks.DEFAULT_STEPS, key="fool_steps",
                          help="Each step follows the gradient again from where the last one ended.")
        fraction = st.select_slider("PGD: step size", FRACTIONS, value=attacks.DEFAULT_STEP_FRACTION,
                                    key="fool_fraction", format_func=attacks.fraction_label,
                                    help="How far one step may move a pixel, as a share of ε; the result is "
                                         "always pulled back to within ε of the original.")
    return Settings(attack, float(eps), int(steps), float(fraction), target)


def _checked(settings: Settings) -> Settings | None:
    """The settings checked again on the server (a URL or a stale form may carry anything)."""
    try:
        return settings.validate(max_steps=MAX_STEPS)
    except AttackError as e:
        st.error(f"These settings cannot be used: {plain(str(e))}", icon=":material/block:")
        return None


# --- the attack --------------------------------------------------------------------------------------------

def _progress(settings: Settings, what: str):
    """A progress bar for PGD (one tick a step) and the function that advances it; (None, None) for FGSM."""
    if settings.attack != "pgd":
        return None, None
    bar = st.progress(0.0, text=f"{what}: step 0 of {settings.steps}")
    done = [0]

    def tick() -> None:
        done[0] += 1
        bar.progress(min(1.0, done[0] / settings.steps), text=f"{what}: step {done[0]} of {settings.steps}")

    return bar, tick


def _fooled(entry: ModelEntry, chosen: inputs.Chosen, settings: Settings) -> Fooled:
    def compute() -> Fooled:
        bar, tick = _progress(settings, f"Attacking {entry.label}")
        result = attacks.fool(state.load(entry), chosen.small, settings, on_step=tick)
        if bar is not None:
            bar.empty()
        return result

    return _remembered(("attack", entry.name, entry.sha256, chosen.key, settings), compute)


def _verdict(entry: ModelEntry, f: Fooled) -> str:
    before, after = CLASSES[f.before], CLASSES[f.after]
    p0, p1 = 100 * float(f.probs_before[f.before]), 100 * float(f.probs_after[f.after])
    target = f.settings.target
    if target is not None and f.succeeded:
        text = (f"**Fooled.** {entry.label} now says **{after}** ({p1:.0f}%), as asked; before, **{before}** "
                f"({p0:.0f}%).")
    elif target is not None:
        pt0, pt1 = 100 * float(f.probs_before[target]), 100 * float(f.probs_after[target])
        text = (f"**Not yet.** It says **{after}** ({p1:.0f}%); “{CLASSES[target]}” went from {pt0:.1f}% to "
                f"{pt1:.1f}%. Try a larger ε or PGD.")
    elif f.succeeded:
        text = f"**Fooled.** {entry.label} now says **{after}** ({p1:.0f}%) instead of **{before}** ({p0:.0f}%)."
    else:
        text = (f"**Not fooled** at ε = {f.settings.eps:g}/255: it still says **{before}** ({p1:.0f}%, before "
                f"{p0:.0f}%). Try a larger ε" + (" or PGD." if f.settings.attack == "fgsm" else "."))
    return text + (f" No pixel value moved by more than {f.linf:.2g}/255." if f.linf > 0 else "")


def _show_attack(entry: ModelEntry, chosen: inputs.Chosen, f: Fooled) -> None:
    eps = f.settings.eps
    picture, factor = attacks.amplified(f.perturbation, eps)
    cols = st.columns(3, gap="small")
    cols[0].image(upscale(chosen.small, SIZE), width="stretch", caption="Original: what the network sees (32×32)")
    cols[1].image(upscale(picture, SIZE), width="stretch",
                  caption=(f"The change, ×{factor:.0f}: grey is none, a full colour is ±{eps:g}/255 in that "
                           f"channel" if eps > 0 else "No change at ε = 0"))
    cols[2].image(upscale(attacks.to_uint8(f.adversarial), SIZE), width="stretch",
                  caption=f"Attacked, at true scale ({f.settings.describe()})")
    st.markdown(_verdict(entry, f))
    charts = st.columns(2, gap="medium")
    for col, probs, title in ((charts[0], f.probs_before, "Before"), (charts[1], f.probs_after, "After the attack")):
        with col:
            st.markdown(f"**{title}**")
            st.plotly_chart(top5_figure(probs, chosen.label), config=CONFIG, width="stretch",
                            key=f"fool_top5_{title[:5]}_{chosen.key}_{entry.name}")
    took = f"{1000 * f.seconds:.0f} ms" if f.seconds < 1 else f"{f.seconds:.1f} s"
    st.caption(f"{f.settings.method()} on {entry.label}, in {took} on this server. "
               + ("The true class is green, a wrong top answer red." if chosen.label is not None else
                  "An upload has no true class: the attack pushes away from the network's own answer."))


# --- the views below ---------------------------------------------------------------------------------------

def _view_picker(container) -> str:
    _from_url("fool_view", "view", list(VIEWS), "smallest")
    view = container.segmented_control("Look closer", list(VIEWS), key="fool_view", format_func=VIEWS.get,
                                       selection_mode="single") or "smallest"
    state.set_query_param("view", view)
    return view


def _search_key(entry: ModelEntry, chosen: inputs.Chosen, s: Settings) -> tuple:
    pgd = (s.steps, s.step_fraction) if s.attack == "pgd" else ()
    return ("smallest", entry.name, entry.sha256, chosen.key, s.attack, *pgd, s.target)


def _search(entries: list[ModelEntry], chosen: inputs.Chosen, settings: Settings) -> None:
    """The smallest eps for each model, one after the other, with a progress bar that says which eps is tried."""
    bar = st.progress(0.0, text="Searching...")
    cache: dict = st.session_state.setdefault(_RESULTS, {})
    for i, e in enumerate(entries):
        def on_try(eps: int, i=i, e=e) -> None:
            bar.progress(min(1.0, (i + eps / EPS_MAX) / len(entries)), text=f"{e.label}: trying ε = {eps}/255")

        cache[_search_key(e, chosen, settings)] = attacks.smallest_eps(state.load(e), chosen.small, settings,
                                                                       on_try=on_try)
    bar.empty()


def _compare_choice(entry: ModelEntry) -> list[ModelEntry]:
    """The chosen model and up to MAX_COMPARE others, as picked (re-checked here against the models on offer)."""
    by_name = {e.name: e for e in state.models() if e.name != entry.name}
    if "fool_compare" in st.session_state:
        kept = [n for n in st.session_state["fool_compare"] if n in by_name]
        st.session_state["fool_compare"] = kept[:MAX_COMPARE]
    picked = st.multiselect("Also search", list(by_name), key="fool_compare", max_selections=MAX_COMPARE,
                            format_func=lambda n: model_label(by_name[n]), placeholder="other models, side by side")
    return [entry] + [by_name[n] for n in picked if n in by_name][:MAX_COMPARE]


def _smallest_view(entry: ModelEntry, chosen: inputs.Chosen, settings: Settings) -> None:
    goal = f"makes it say “{CLASSES[settings.target]}”" if settings.target is not None else "changes its answer"
    st.markdown(f"The smallest ε at which {settings.method()} {goal}, for this image: each ε from 1 to {EPS_MAX} "
                "is tried in turn (Captum's MinParamPerturbation). A deeper or a residual net may hold out longer.")
    entries = _compare_choice(entry)
    cache: dict = st.session_state.setdefault(_RESULTS, {})
    missing = [e for e in entries if _search_key(e, chosen, settings) not in cache]
    if missing and missing[0] is entry and settings.attack == "fgsm":  # cheap: at most 16 single steps
        _search([entry], chosen, settings)
        missing = missing[1:]
    if missing and st.button(f"Search {len(missing)} model{'s' if len(missing) > 1 else ''}", key="fool_search",
                             icon=":material/search:", help=f"At most {EPS_MAX} attacks a model"):
        _search(missing, chosen, settings)
        missing = []
    rows = [(e.label, cache[_search_key(e, chosen, settings)]) for e in entries
            if _search_key(e, chosen, settings) in cache]
    if rows:
        st.plotly_chart(smallest_eps_figure(rows, EPS_MAX), config=CONFIG, width="stretch", key="fool_smallest")
    if missing:
        st.caption("Not searched yet: " + ", ".join(e.label for e in missing) + ".")


def _explain_view(entry: ModelEntry, chosen: inputs.Chosen, f: Fooled) -> None:
    keys = list(METHODS)
    if st.session_state.get("fool_method") not in keys:
        st.session_state["fool_method"] = "gradcam"
    method = st.selectbox("Method", keys, key="fool_method", format_func=lambda k: METHODS[k].label)
    model = state.load(entry)
    attacked = attacks.Normalize()(f.adversarial)
    before = _remembered(("map", entry.name, entry.sha256, chosen.key, method, f.before),
                         lambda: explain.attribute(model, chosen.x, method, f.before))
    after = _remembered(("map", entry.name, entry.sha256, chosen.key, f.settings, method, f.after),
                        lambda: explain.attribute(model, attacked, method, f.after))
    cols = st.columns(3, gap="small")
    cols[0].image(explain.overlay(chosen.small, before.map, 0.6, SIZE), width="stretch",
                  caption=f"Original: why “{CLASSES[f.before]}”")
    cols[1].image(explain.overlay(attacks.to_uint8(f.adversarial), after.map, 0.6, SIZE), width="stretch",
                  caption=f"Attacked: why “{CLASSES[f.after]}”")
    with cols[2]:
        st.markdown(f"**{METHODS[method].label}**: {METHODS[method].summary}")
        st.image(explain.colorize(np.tile(np.linspace(0, 1, 256), (10, 1))), width="stretch",
                 caption="low → high attribution")
        st.caption("The change is spread thinly over the whole image, yet the maps can move a lot: the network "
                   "now finds its evidence elsewhere.")


@st.cache_resource(max_entries=8, show_spinner="Placing test images on the map (once per model)...")
def _scored(_model: torch.nn.Module, name: str, sha256: str | None, where: str, indices: tuple) -> np.ndarray:
    return attacks.scores(_model, _scored_images(where, indices))


def _scored_images(where: str, indices: tuple) -> np.ndarray:
    images, _ = inputs.gallery()
    return np.stack([images[i][0] for i in indices])


def _cloud(entry: ModelEntry) -> tuple[np.ndarray, np.ndarray] | None:
    """(logits, labels) of up to CLOUD_PER_CLASS test images a class, in the order of their test index."""
    images, where = inputs.gallery()
    if not images:
        return None
    per_class: dict[int, list[int]] = {}
    for i in sorted(images):
        if len(per_class.setdefault(images[i][1], [])) < CLOUD_PER_CLASS:
            per_class[images[i][1]].append(i)
    indices = tuple(sorted(i for group in per_class.values() for i in group))
    labels = np.array([images[i][1] for i in indices])
    return _scored(state.load(entry), entry.name, entry.sha256, where, indices), labels


def _landing_view(entry: ModelEntry, f: Fooled) -> None:
    cloud = _cloud(entry)
    if cloud is None:
        st.info("No test images are available here to draw the map with.")
        return
    a = f.before
    b = f.after if f.after != a else int(np.argsort(-f.logits_after.numpy())[1])
    fig = landing_figure(cloud[0], cloud[1], a, b, f.logits_before.numpy(), f.logits_after.numpy())
    st.plotly_chart(fig, config=CONFIG, width="stretch", key="fool_lands")
    st.caption(f"Each dot is a test image of a {CLASSES[a]} or a {CLASSES[b]}, placed by {entry.label}'s scores "
               "(logits) for the two classes: its last features seen along the classifier's two directions. Below "
               f"the dotted line it prefers {CLASSES[a]}, above it {CLASSES[b]}. The arrow is the attack: a change too "
               "small to see carries the image across the line, into the other class's crowd.")


def _depth_summary(series: list[dict]) -> str:
    """One sentence from the table: the most and the least robust model under the fairer attack at eps = 2."""
    for attack in ("pgd", "fgsm"):
        at = [(s["accuracy"][s["eps"].index(2.0)], s["label"]) for s in series if s["attack"] == attack
              and 2.0 in s["eps"]]
        if len(at) >= 2:
            (lo, lo_label), (hi, hi_label) = min(at), max(at)
            return (f"Under {attacks.ATTACKS[attack]} at ε = 2/255, {hi_label} keeps {100 * hi:.1f}% of its answers "
                    f"right and {lo_label} {100 * lo:.1f}%.")
    return ""


def _depth_view() -> None:
    st.subheader("Accuracy under attack, model by model")
    try:
        table = robustness.read_table()
    except ValueError as e:
        state.problem("The shipped table of accuracy under attack could not be read.", e)
        return
    series = robustness.table_series(table) if table else []
    if not series:
        st.info("No table of accuracy under attack is shipped here. `python -m resnet_demo robustness --model all "
                "--attack pgd --images 500 --out weights/robustness.json` measures one.")
        return
    for s in series:
        info = table.get("models", {}).get(s["model"], {})
        s["depth"], s["plain"] = info.get("depth"), info.get("plain")
    st.plotly_chart(robustness_figure(series), config=CONFIG, width="stretch", key="fool_depth")
    data = {s["data"] for s in series}
    st.markdown(_depth_summary(series) + " Residual nets are solid lines, plain nets dashed; ε = 0 is the clean "
                "accuracy on the same images" + (" (the built-in test subset)." if data == {"builtin"} else "."))
    st.caption(robustness.CAVEAT)
    with st.expander("How it was measured"):
        st.markdown(table.get("definition", ""))
        st.code("\n".join(table.get("commands", [])), language="bash")


def render() -> None:
    entry, head = pickers.model_page_head(
        "Fool it", "Change a picture by less than a person can see, and the network calls it something else: an "
                   "adversarial example.")
    if entry is None:
        return
    attack, target = _attack_picker(head[1]), _goal_picker(head[2])
    left, right = st.columns([1.3, 2.3], gap="large")
    with left:
        st.subheader("Image")
        found = inputs.pick("fool", multiple=False, offer_current=True)
        chosen = found[0] if found else None
        st.subheader("Attack")
        settings = _checked(_settings(attack, target))
    fooled = None
    if chosen is None:
        right.info("Pick a test image, upload a photo, or take one with the camera.", icon=":material/arrow_back:")
    elif settings is not None:
        inputs.set_current(chosen)
        with right:
            fooled = _fooled(entry, chosen, settings)
            _show_attack(entry, chosen, fooled)
    st.divider()
    view = _view_picker(st)
    if view == "depth":
        _depth_view()
    elif fooled is None:
        st.info("This view needs an image and an attack above.")
    elif view == "smallest":
        _smallest_view(entry, chosen, settings)
    elif view == "explain":
        _explain_view(entry, chosen, fooled)
    else:
        _landing_view(entry, fooled)
