"""The Teach page's lower half and its project file: what to start from and the Train / Compare buttons (each
checked again on the server when clicked), the fine-tune's place in the queue and live curves, the held-out
score and confusion matrix, and saving or opening the tab's work as one project file."""
from __future__ import annotations

import re

import numpy as np
import streamlit as st

from resnet_demo.data.images import upscale
from resnet_demo.nets.classes import ClassNameError
from resnet_demo.nets.model import Arch
from resnet_demo.server.teach_queue import DONE, FAILED, GONE, WAITING, QueueFull
from resnet_demo.store.project import MAX_FILE_BYTES, ProjectError, project_bytes, read_project
from resnet_demo.store.registry import ModelEntry, model_label
from resnet_demo.training import budget
from resnet_demo.training.teach import SCRATCH, TeachConfig, TeachError, default_start

from . import downloads, finetunes, lesson, state, uploads
from .charts import finetune as curves
from .charts.style import CONFIG
from .charts.testset import confusion_figure
from .plain import plain

HOLDOUT = 0.2  # of each class's images, held out to test on: 1 of the minimum 5
STEPS = (25, 50, 100, 150, 250, 400)
DEFAULT_STEPS = TeachConfig.steps  # 150: the length the core's benchmark times
RUN_TITLES = {"taught": "Held-out accuracy", "trained": "Started trained", "scratch": "Started from random weights"}
MISTAKES_SHOWN = 24


# ------------------------------------------------------------------ what to start from, and the buttons


def _starts() -> dict[str, ModelEntry | None]:
    """{name: entry} of the networks a fine-tune may start from (CIFAR-10 models), then random weights."""
    entries = {e.name: e for e in state.models() if e.is_cifar10 and e.source != state.TAUGHT}
    return {**entries, SCRATCH: None}


def _default_start(names: list[str]) -> str:
    try:
        wanted = default_start().name
    except TeachError:
        wanted = None
    return wanted if wanted in names else names[0]


def teach_panel(work: lesson.Lesson) -> None:
    left, right = st.columns([1, 2.2], gap="large")
    with left:
        starts = _starts()
        names = list(starts)
        if st.session_state.get("teach_start") not in names:
            st.session_state["teach_start"] = _default_start(names)
        start = st.selectbox("Start from", names, key="teach_start",
                             format_func=lambda n: "Random weights (ResNet-20)" if n == SCRATCH else
                             model_label(starts[n]),
                             help="A network that knows CIFAR-10 already has eyes for edges, textures and parts; "
                                  "random weights must learn everything from your images.")
        steps = st.select_slider("Training steps", STEPS, value=DEFAULT_STEPS, key="teach_steps",
                                 help="Each step learns from a batch of randomly cropped and flipped copies.")
        _buttons(work, start, steps)
    with right:
        if work.ticket is not None and not work.ticket.done:
            st.fragment(run_every=1.0)(_live)(work)
        else:
            _collect(work)
            results_panel(work)


def _buttons(work: lesson.Lesson, start: str, steps: int) -> None:
    problems = work.problems()
    for problem in problems:
        st.warning(problem, icon=":material/info:")
    busy = work.ticket is not None and not work.ticket.done
    locked = not finetunes.can_teach()
    why = (finetunes.LOCKED if locked else "This tab's fine-tune is under way." if busy else
           "Fix what is said above first." if problems else None)
    off = bool(problems) or busy or locked
    train = st.button("Train", type="primary", icon=":material/school:", key="teach_train", disabled=off,
                      width="stretch", help=why or "Fine-tune the whole network on these images.")
    compare = st.button("Compare with random weights", icon=":material/compare_arrows:",
                        key="teach_compare", disabled=off or start == SCRATCH, width="stretch",
                        help=why or ("Pick a trained network to start from." if start == SCRATCH else
                                     "Teach twice on the same images and held-out photos: from the network above "
                                     "and from random weights."))
    if (train or compare) and start_teaching(work, compare, start, steps):
        st.rerun()


def start_teaching(work: lesson.Lesson, compare: bool, start: str, steps: int) -> bool:
    """What Train and Compare do: checked here, on the server, whatever the buttons showed. True when queued."""
    if not finetunes.may_teach("a comparison" if compare else "teaching"):
        return False
    if work.ticket is not None and not work.ticket.done:
        st.error("This tab's fine-tune is under way; wait for it, or stop it.")
        return False
    problems = work.problems()
    if problems:
        st.error(problems[0])
        return False
    entry = _starts().get(start, "missing")
    if entry == "missing" or (compare and entry is None):
        st.error("Pick a network to start from (the list has changed).")
        return False
    base = state.load(entry) if entry is not None else None
    config = TeachConfig(start=SCRATCH if entry is None else entry.name, steps=int(steps), holdout=HOLDOUT,
                         batch_size=_batch())
    problem = finetunes.limits(base.arch if base is not None else Arch(config.depth), config.batch_size)
    if problem:
        st.error(f"This fine-tune breaks the server's limits: {problem}")
        return False
    return _submit(work, config, compare, base)


def _batch() -> int:
    """The teach's batch, lowered to the server's RESNET_DEMO_MAX_BATCH when that is smaller."""
    try:
        cap = budget.env_number(budget.ENV_MAX_BATCH, int)
    except ValueError:
        cap = None
    return min(TeachConfig.batch_size, cap) if cap and cap > 0 else TeachConfig.batch_size


def _submit(work: lesson.Lesson, config: TeachConfig, compare: bool, base) -> bool:
    try:
        data = work.split()
        work.ticket = finetunes.queue().submit(data, config, owner=work, compare=compare, base=base,
                                               alive=finetunes.alive_check())
    except (TeachError, ClassNameError, QueueFull) as e:
        st.error(str(e))
        return False
    work.asked, work.note = data, None
    return True


# ------------------------------------------------------------------ under way


def _live(work: lesson.Lesson) -> None:
    ticket = work.ticket
    if ticket is None or ticket.done:
        st.rerun()  # finished: the whole page redraws, buttons and results
        return
    queue = finetunes.queue()
    place = queue.position(ticket)
    if ticket.state == WAITING and place:
        running, waiting = queue.counts()
        st.info(f"Waiting for the server: number {place} in the queue ({running} fine-tune"
                f"{'s' if running != 1 else ''} running, {waiting} waiting). It starts by itself.",
                icon=":material/hourglass_top:")
    else:
        st.progress(*_progress(ticket.events, ticket.kind == "compare"))
    if st.button("Stop", key="teach_stop", icon=":material/stop:"):
        queue.cancel(ticket)
    events = list(ticket.events)
    if any(e["type"] == "step" for e in events):
        a, b = st.columns(2)
        a.plotly_chart(curves.loss_figure(events), config=CONFIG, key="teach_live_loss")
        b.plotly_chart(curves.accuracy_figure(events), config=CONFIG, key="teach_live_acc")


def _progress(events: list[dict], compare: bool) -> tuple[float, str]:
    steps = [e for e in events if e["type"] == "step"]
    if not steps:
        return 0.0, "starting…"
    last = steps[-1]
    run = last.get("run", "taught")
    done = last["step"] + (last["total_steps"] if run == "scratch" else 0)
    total = last["total_steps"] * (2 if compare else 1)
    what = f" {curves.RUN_NAMES[run]}" if compare else ""
    return min(1.0, done / total), (f"step {last['step']}/{last['total_steps']}{what} · loss {last['loss']:.2f} · "
                                    f"about {last['eta_s']:.0f} s left")


def _collect(work: lesson.Lesson) -> None:
    """A finished fine-tune's networks become this tab's taught models (only the runs that completed)."""
    ticket = work.ticket
    if ticket is None or not ticket.done:
        return
    work.ticket = None
    done = {tag: r for tag, r in ticket.results.items() if r.status == "completed"}
    if ticket.state == FAILED:
        work.note = f"The fine-tune failed: {ticket.error}"
    elif not done:
        work.note = ("The fine-tune was stopped before it finished; nothing was kept." if ticket.state != GONE
                     else "The fine-tune was given up.")
    if done and work.asked is not None:
        work.taught = lesson.from_results(done, work.asked)
        state.set_taught([(m.entry, m.model) for m in work.taught.models])
        if ticket.state != DONE:
            work.note = "The comparison was stopped: only the network that finished is kept."
    work.asked = None


# ------------------------------------------------------------------ results


def results_panel(work: lesson.Lesson) -> None:
    if work.note:
        st.warning(work.note)
    taught = work.taught
    if taught is None:
        st.info("When every class has its images, press **Train**. The network's score on the held-out images, "
                "a fifth of each class that it never learns from, appears here.", icon=":material/arrow_back:")
        return
    _scores(taught)
    _confusions(taught)
    _mistakes(taught)
    _use_it(taught.main.entry)


def _scores(taught: lesson.Taught) -> None:
    cols = st.columns(max(2, len(taught.models)))
    main_acc = taught.main.record.get("holdout_accuracy")
    for col, m in zip(cols, taught.models, strict=False):
        acc, n = m.record.get("holdout_accuracy"), m.record.get("holdout_images", 0)
        delta = (f"{100 * (acc - main_acc):+.0f} points" if m is not taught.main and None not in (acc, main_acc)
                 else None)
        col.metric(RUN_TITLES[m.tag], "—" if acc is None else f"{100 * acc:.0f}%", delta=delta,
                   help=f"Right answers on the {n} held-out images, which it never trained on.")
    compared = taught.main.record.get("compared", {})
    if len(taught.models) > 1 or compared:
        scratch = taught.models[1].record.get("holdout_accuracy") if len(taught.models) > 1 else compared.get(
            "scratch")
        if None not in (main_acc, scratch):
            st.markdown(f"Same images, same steps, same held-out photos: starting from a trained network scored "
                        f"**{100 * main_acc:.0f}%**, starting from random weights **{100 * scratch:.0f}%**. What a "
                        f"network learned on CIFAR-10 carries over to your classes: that is transfer learning.")
    st.caption(f"{model_label(taught.main.entry)} · {how(taught.main.record)}")


def how(record: dict) -> str:
    return (f"{record.get('steps', '?')} steps on {record.get('train_images', '?')} images, "
            f"{record.get('holdout_images', '?')} held out, in {record.get('wall_time_s', '?')} s")


def _confusions(taught: lesson.Taught) -> None:
    shown = [m for m in taught.models if m.record.get("confusion")]
    if not shown:
        return
    cols = st.columns(len(shown))
    for col, m in zip(cols, shown, strict=True):
        with col:
            st.markdown(f"**Confusion matrix** · {RUN_TITLES[m.tag].lower() if m.tag != 'taught' else 'held out'}")
            st.plotly_chart(confusion_figure(m.record["confusion"], classes=taught.classes, clickable=False,
                                             height=260 + 30 * len(taught.classes)),
                            config=CONFIG, key=f"teach_confusion_{m.tag}")


def _mistakes(taught: lesson.Taught) -> None:
    pred = taught.held_pred.get(taught.main.tag, np.zeros(0, np.int64))
    if len(pred) != len(taught.held_labels) or not len(pred):
        return
    wrong = np.flatnonzero(pred != taught.held_labels)
    if not len(wrong):
        st.caption("It got every held-out image right.")
        return
    st.markdown(f"**Held-out images it got wrong** ({len(wrong)} of {len(pred)}): true class → its answer")
    cols = st.columns(8, gap="small")
    for col, i in zip(cols * 4, wrong[:MISTAKES_SHOWN], strict=False):
        col.image(upscale(taught.held_images[i], 64), width="stretch",
                  caption=f"{taught.classes[taught.held_labels[i]]} → {taught.classes[pred[i]]}")


def _use_it(entry: ModelEntry) -> None:
    st.markdown("**Use it**: it is in the model list of every page in this tab. Does it look at the object, or at "
                "the background? Explain shows it.")
    cols = st.columns(3)
    if cols[0].button("Predict with it", icon=":material/image_search:", key="teach_go_predict", width="stretch"):
        st.switch_page(st.Page(_stub, url_path="predict"), query_params={"model": entry.name})
    if cols[1].button("Explain it", icon=":material/visibility:", key="teach_go_explain", width="stretch"):
        st.switch_page(st.Page(_stub, url_path="explain"), query_params={"model": entry.name})
    downloads.export_buttons(entry, cols[2], key_prefix="teach_download")


def _stub() -> None:
    """Only its url_path matters: st.switch_page finds the registered page by it."""


# ------------------------------------------------------------------ the project file


def project_panel(work: lesson.Lesson, key: str) -> None:
    """Save this tab's work as one file, or open one (it replaces the work here)."""
    with st.expander("Save or open a project", icon=":material/folder_open:"):
        left, right = st.columns(2, gap="large")
        with left:
            _save(work)
        with right:
            _open(key)


def _file_name(names: list[str]) -> str:
    stem = "-".join(re.sub(r"[^\w-]+", "_", n.strip()).strip("_") for n in names if n.strip())[:80] or "project"
    return f"{stem}.teach.zip"


def _save(work: lesson.Lesson) -> None:
    try:
        project, note = work.project()
    except (ClassNameError, ProjectError) as e:
        st.caption(f"To save, the classes need names: {e}.")
        return
    if note:
        st.caption(note)
    what = f"{len(project.images)} images of {len(project.classes)} classes" + (
        " and the taught model" if project.model is not None else "")
    st.download_button("Save project", data=lambda: project_bytes(project), file_name=_file_name(work.names()),
                       mime="application/zip", icon=":material/download:", key="teach_save", on_click="ignore",
                       help=f"One file with {what}: open it here again, on any server running this app.")


def _open(key: str) -> None:
    round_key = "teach_open_round"
    upload = st.file_uploader("Open a project", type=["zip"], key=f"teach_open_{st.session_state.get(round_key, 0)}",
                              help="A .teach.zip saved from this page. It replaces the classes and images here.")
    message = st.session_state.pop("teach_open_message", None)
    if message:
        (st.success if message[0] else st.error)(message[1])
    if upload is None:
        return
    data = upload.getvalue()
    uploads.release([upload.file_id])
    st.session_state[round_key] = st.session_state.get(round_key, 0) + 1
    try:
        if len(data) > MAX_FILE_BYTES:
            raise ProjectError(f"the file is larger than {MAX_FILE_BYTES // 2**20} MB")
        opened = lesson.from_project(read_project(data))
    except ProjectError as e:
        st.session_state["teach_open_message"] = (False, f"{plain(upload.name)} could not be opened: {e}")
        st.rerun()
    st.session_state[key] = opened
    state.set_taught([(m.entry, m.model) for m in opened.taught.models] if opened.taught else [])
    with_model = " and its taught model" if opened.taught else ""
    st.session_state["teach_open_message"] = (True, f"Opened {plain(upload.name)}: {len(opened.groups)} classes, "
                                                    f"{opened.count()} images{with_model}.")
    st.rerun()
