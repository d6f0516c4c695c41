"""Train page: start one background training job, watch it live from any tab, stop/resume it, compare runs.

The job runs in its own process (resnet_demo.jobs); this page only reads its files, so it never blocks:
a fragment polls the event file every second while a job runs (every few seconds otherwise, to notice a
job started from another tab).
"""
from __future__ import annotations

import time

import streamlit as st
import torch

from ... import jobs, sources
from ...data import candidate_dirs, find_cifar10
from ...download import DownloadError, download_cifar10, offline_help
from ...events import epochs as epoch_rows
from ...paper import FIG6_CORE, FIG6_NOTE, PRESET_DEPTHS, blocks_per_stage
from ...recipes import RECIPES
from ...weights import ModelEntry, WeightsError, finished_runs, with_history
from .. import charts

FULL_TRAIN, FULL_TEST = 50_000, 10_000
CHART_CONFIG = {"displayModeBar": False}
FORCE_AFTER_S = 15  # offer "force stop" when a stop request has not been honoured this long


def render() -> None:
    st.title("Train a ResNet")
    st.caption("One training job runs at a time on this server. Everyone who opens this page sees it live; "
               "anyone can stop it. Finished runs appear on every page as models.")
    left, right = st.columns([1, 2], gap="large")
    with left:
        _settings_panel()
    with right:
        _live_panel()
    st.divider()
    _compare_section()


# ------------------------------------------------------------------ settings + Start


def _settings_panel() -> None:
    st.subheader("Settings")
    running = jobs.active() is not None
    depth_choice = st.selectbox("Depth", [*PRESET_DEPTHS, "other"], index=0, key="train_depth_choice",
                                format_func=lambda d: f"{d} layers" if d != "other" else "other (6n+2)",
                                help="The paper's CIFAR-10 depths. Any 6n+2 works: n blocks per stage, 3 stages.")
    depth = depth_choice
    if depth_choice == "other":
        depth = int(st.number_input("Depth (6n+2)", min_value=2, max_value=1202, value=8, step=6,
                                    key="train_depth_other"))
    try:
        n = blocks_per_stage(depth)
        st.caption(f"{n} block{'s' if n > 1 else ''} per stage × 3 stages × 2 convs + stem + classifier "
                   f"= {depth} weighted layers")
        depth_ok = True
    except ValueError as e:
        st.error(str(e))
        depth_ok = False
    kind = st.radio("Network", ["residual", "plain"], horizontal=True, key="train_kind",
                    help="Plain: the same layers with the shortcuts removed (the paper's Fig. 6 baseline).")
    shortcut = st.radio("Shortcut", ["A", "B"], horizontal=True, key="train_shortcut", disabled=kind == "plain",
                        format_func=lambda s: {"A": "A: identity + zero padding", "B": "B: 1×1 projection"}[s],
                        help="Where the shape changes: A pads the identity with zeros (the paper's CIFAR choice, "
                             "no parameters); B uses a 1×1 convolution.")
    preset = st.selectbox("Preset", list(RECIPES), index=list(RECIPES).index("classroom"), key="train_preset")
    st.caption(RECIPES[preset].description)
    cuda = torch.cuda.is_available()
    devices = ["cuda", "cpu"] if cuda else ["cpu"]
    device = st.selectbox("Device", devices, key="train_device",
                          format_func=lambda d: f"CUDA GPU ({torch.cuda.get_device_name(0)})" if d == "cuda" else "CPU")
    on_gpu = device == "cuda"
    recipe = RECIPES[preset]
    epochs_key = f"train_epochs_{preset}"
    subset = int(st.number_input("Training images", min_value=16, max_value=FULL_TRAIN,
                                 value=FULL_TRAIN if on_gpu and find_cifar10() is not None else 5000, step=1000,
                                 key=f"train_subset_{device}",
                                 on_change=(lambda: st.session_state.pop(epochs_key, None)) if recipe.same_work else None,
                                 help="A stratified subset trains faster; 50,000 is the whole set."
                                      + (" The classroom preset trains for the same number of steps whatever the "
                                         "number: more epochs on fewer images." if recipe.same_work else "")))
    epochs = int(st.number_input("Epochs", min_value=1, max_value=1000, value=min(1000, recipe.epochs_for(subset)),
                                 key=epochs_key, help="The schedule stretches to fit."))
    data = sources.plan(None, preset, None if subset >= FULL_TRAIN else subset)
    _data_notice(data)
    builtin = data.kind == sources.BUILTIN
    final_test = f"all {data.test_images:,} built-in test images" if builtin else "all 10,000 test images"
    with st.expander("Advanced"):
        test_subset = int(st.number_input("Test images per epoch", min_value=10, max_value=FULL_TEST,
                                          value=FULL_TEST if on_gpu else 2000, step=500,
                                          key=f"train_test_subset_{device}",
                                          help="For the per-epoch test curve only; the final accuracy always "
                                               f"uses {final_test}."))
        batch = int(st.number_input("Batch size", min_value=8, max_value=4096, value=recipe.batch_size,
                                    step=32, key=f"train_batch_{preset}",
                                    help="The learning rate scales linearly with it."))
        seed = int(st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="train_seed"))
    settings = jobs.JobSettings(
        depth=depth if isinstance(depth, int) else 20, plain=kind == "plain",
        shortcut="A" if kind == "plain" else shortcut, preset=preset, epochs=epochs,
        subset=None if subset >= FULL_TRAIN else subset, test_subset=None if test_subset >= FULL_TEST else test_subset,
        batch_size=None if batch == RECIPES[preset].batch_size else batch, device=device, seed=seed)
    problem = None
    if depth_ok:
        try:
            settings.validate()
        except ValueError as e:
            problem = str(e)
            st.error(problem)
    steps = max(1, subset // batch) * epochs
    st.caption(f"{steps:,} training steps ({max(1, subset // batch):,} per epoch).")
    clicked = st.button("Start training", type="primary", icon=":material/play_arrow:", key="train_start",
                        disabled=running or not depth_ok or problem is not None or data.kind == sources.MISSING,
                        width="stretch",
                        help="A job is running; stop it first." if running else None)
    if running:
        st.caption("A training job is running (see the right); stop it there to start another.")
    if clicked:
        try:
            run_id = jobs.start(settings)
        except (jobs.JobError, ValueError, OSError) as e:
            st.error(str(e))
        else:
            st.session_state["train_run"] = run_id
            st.rerun()


def _data_notice(data: sources.Plan) -> None:
    """Before Start: which data the run will use, and a way to get the full set when it is absent."""
    if data.kind == sources.FULL:
        return
    (st.info if data.kind == sources.BUILTIN else st.warning)(data.message)
    if st.button("Download the full CIFAR-10 (170 MB)", icon=":material/download:", key="train_download",
                 disabled=jobs.active() is not None):
        dest = candidate_dirs()[0]
        bar = st.progress(0.0, text=f"Downloading CIFAR-10 into {dest}…")

        def progress(done: int, total: int | None) -> None:
            text = f"Downloading CIFAR-10 into {dest}: {done / 1e6:.0f}" + (f" of {total / 1e6:.0f} MB" if total else " MB")
            bar.progress(min(1.0, done / total) if total else 0.0, text=text)

        try:
            download_cifar10(dest, progress)
        except DownloadError as e:
            bar.empty()
            st.error(f"The download failed: {e} {offline_help(dest)}")
        else:
            st.rerun()


# ------------------------------------------------------------------ live view of the job


def _live_panel() -> None:
    active = jobs.active()
    st.session_state["train_seen_active"] = active["run_id"] if active else None
    st.fragment(run_every=1.0 if active else 5.0)(_job_view)()


def _shown_run() -> jobs.RunStatus | None:
    """The running job; else the run this session last watched; else the newest run."""
    now = jobs.current()
    if now is not None:
        st.session_state["train_run"] = now.run_id
        return now
    wanted = st.session_state.get("train_run")
    if wanted and (jobs.runs_path() / wanted).is_dir():
        return jobs.status(wanted)
    runs = jobs.list_runs()
    return runs[0] if runs else None


def _job_view() -> None:
    run = _shown_run()
    seen = st.session_state.get("train_seen_active")
    if (run.run_id if run is not None and run.active else None) != seen:
        st.rerun()  # a job started or ended (maybe in another tab): refresh buttons and lists
    if run is None:
        st.subheader("No training run yet")
        st.info("Choose the settings on the left and press **Start training**. With the *classroom* preset and "
                "5,000 images a ResNet-20 learns visibly within minutes on a laptop CPU.")
        return
    _job_header(run)
    _job_charts(run)


STATE_BADGE = {"starting": ("blue", "starting"), "running": ("green", "running"), "stopping": ("orange", "stopping"),
               "completed": ("green", "finished"), "stopped": ("gray", "stopped"), "failed": ("red", "failed")}


def _job_header(run: jobs.RunStatus) -> None:
    color, word = STATE_BADGE.get(run.state, ("gray", run.state))
    st.subheader(f"{run.label} :{color}-badge[{word}]")
    start, step, end_epoch = run.last("start"), run.last("step"), run.last("epoch")
    precision = (start or {}).get("config", {}).get("precision_used")
    st.caption(f"Run `{run.run_id}`" + (f" · {start['device']} · {start['train_images']:,} training images · "
                                        f"batch {start['batch_size']}" if start else "")
               + (f" · {precision}" if precision else ""))
    if run.active:
        if run.state == "starting" or step is None:
            text = "loading the data and building the model…"
        else:
            eta = step.get("eta_s")
            text = (f"step {step['step']:,}/{step.get('total_steps', start['total_steps']):,} · epoch "
                    f"{step['epoch']:.1f}/{start['epochs']} · {step['images_per_s']:.0f} images/s · "
                    f"ETA {_duration(eta) if eta is not None else '…'}")
        st.progress(run.progress, text=text)
        cols = st.columns(2)
        if run.state == "stopping":
            cols[0].info("Stopping after this step (a checkpoint is saved)…")
            stopped_at = _stop_time(run)
            if stopped_at is not None and time.time() - stopped_at > FORCE_AFTER_S:
                cols[1].button("Force stop", key="train_force", icon=":material/cancel:",
                               on_click=lambda: jobs.stop(force=True),
                               help="Interrupts the trainer; the last saved checkpoint is kept.")
        else:
            cols[0].button("Stop", key="train_stop", icon=":material/stop:", width="stretch", on_click=jobs.stop,
                           help="Stops after the current step and saves a checkpoint you can resume from.")
    else:
        if run.state == "completed":
            end = run.last("end") or {}
            acc, n = end.get("test_accuracy"), end.get("test_images")
            on = (f"{n:,} {'built-in ' if end.get('data') == 'builtin' else ''}test images" if n else "all test images")
            st.success(f"Finished: test accuracy {100 * acc:.2f}% on {on}. The model is now listed on every page."
                       if acc is not None else run.message)
        elif run.state == "stopped":
            end, total = run.last("end") or {}, (start or {}).get("total_steps")
            where = f"step {end['step']:,} of {total:,} ({100 * run.progress:.0f}%)" if "step" in end and total else ""
            st.info(f"Stopped{' at ' + where if where else ''}. "
                    + ("The checkpoint is kept: resume below whenever you like." if run.resumable else run.message))
        else:
            st.error(f"Training failed: {run.message}")
        if run.resumable:
            if st.button("Resume from the checkpoint", key="train_resume", icon=":material/resume:",
                         disabled=jobs.active() is not None):
                try:
                    jobs.resume(run.run_id)
                except (jobs.JobError, OSError, ValueError) as e:
                    st.error(str(e))
                else:
                    st.rerun()
    if end_epoch is not None:
        c = st.columns(4)
        c[0].metric("Epoch", f"{end_epoch['epoch']}")
        c[1].metric("Train accuracy", f"{100 * end_epoch['train_acc']:.1f}%")
        c[2].metric("Test accuracy", f"{100 * end_epoch['test_acc']:.1f}%")
        c[3].metric("Elapsed", _duration(end_epoch["elapsed_s"]))


def _stop_time(run: jobs.RunStatus) -> float | None:
    try:
        return (run.path / jobs.STOP_FILE).stat().st_mtime
    except OSError:
        return None


def _job_charts(run: jobs.RunStatus) -> None:
    if run.last("step") is None:
        return
    a, b = st.columns(2)
    a.plotly_chart(charts.loss_figure(run.events), key="train_chart_loss", config=CHART_CONFIG)
    if epoch_rows(run.events):
        b.plotly_chart(charts.accuracy_figure(run.events), key="train_chart_acc", config=CHART_CONFIG)
    else:
        b.caption("Train and test accuracy appear after the first epoch.")
    lr = charts.lr_figure(run.events)
    lr.update_layout(height=220)
    st.plotly_chart(lr, key="train_chart_lr", config=CHART_CONFIG)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


# ------------------------------------------------------------------ comparing runs (Fig. 6)


def _comparable() -> list[ModelEntry]:
    entries: list[ModelEntry] = []
    for source in (with_history, finished_runs):
        try:
            entries += [e for e in source() if e.history is not None and e.history.is_file()]
        except WeightsError as e:
            st.warning(str(e))
    return entries


def _compare_section() -> None:
    st.subheader("Compare runs")
    st.caption("Overlay the error curves of shipped models and finished runs — e.g. plain-20, plain-56, ResNet-20 "
               "and ResNet-56 reproduce the paper's Fig. 6: training error dashed, test error solid. " + FIG6_NOTE)
    entries = _comparable()
    if not entries:
        st.info("No finished run or shipped model with a training history yet.")
        return
    by_name = {e.name: e for e in entries}
    fig6 = [n for n in FIG6_CORE if n in by_name]
    default = fig6 or [e.name for e in entries[:4]]
    chosen = st.multiselect("Runs", list(by_name), default=default, key="train_compare",
                            format_func=lambda n: _entry_label(by_name[n]))
    if not chosen:
        return
    short = {n: by_name[n].label.split(" · ")[0] for n in chosen}
    clash = {lab for lab in short.values() if list(short.values()).count(lab) > 1}
    histories = [(f"{short[n]} ({n.removeprefix('run:')})" if short[n] in clash else short[n],
                  by_name[n].load_history()) for n in chosen]
    empty = [label for label, h in histories if not epoch_rows(h)]
    st.plotly_chart(charts.error_figure([h for h in histories if epoch_rows(h[1])]), key="train_chart_compare",
                    config=CHART_CONFIG)
    if empty:
        st.caption("No per-epoch records in: " + ", ".join(empty))
    st.caption("Train error is the running value over each epoch on augmented batches; test error is measured "
               "after each epoch. Runs of different lengths share the epoch axis.")


def _entry_label(e: ModelEntry) -> str:
    rec = e.record
    epochs = rec.get("epochs")
    bits = [e.label if e.source == "run" else f"{e.label} ({e.name})", rec.get("preset") and f"{rec['preset']} preset",
            epochs and f"{epochs} epoch{'s' if epochs != 1 else ''}"]
    if e.test_accuracy is not None:
        bits.append(f"{100 * e.test_accuracy:.1f}%")
    elif e.source == "retired":
        bits.append("history only")
    return " · ".join(str(b) for b in bits if b)
