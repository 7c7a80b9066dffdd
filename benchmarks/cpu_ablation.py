"""Controlled ablation of the `cpu` preset: one change at a time, several seeds, equal image budgets, exact metrics.

Each (arm, seed) trains with `concept-diffusion train --preset cpu` plus BASE_FLAGS (the preset's recipe before
it took the winning arm) and the arm's flags (or on a copy of the preset with the arm's architecture edits),
one torch thread per run, runs spread over the cores (`--parallel`, each pinned to its own core); then every
final EMA concept encoder is scored with all six metrics at disentanglement_lib's full sizes. Prints a table
(mean and spread over seeds per arm) and writes JSON.

    python benchmarks/cpu_ablation.py --arms base,uniform_t --seeds 0,1 --images 32000 --parallel 2
    python benchmarks/cpu_ablation.py --report     # every recorded run: table, picture, concept-factor maps

On a machine with a GPU the same command trains there (accelerate picks the device; `--parallel` runs share
it), `--eval-every` records FactorVAE / DCI curves along training (fast mode, the trainer's), and
`--no-score` stops after training, so that the run folders (their `pipeline/concept_encoder` is all the
scoring needs) can be brought back and scored with the same command elsewhere: finished trainings are skipped,
and a training that was stopped resumes from its last checkpoint (every 500 steps) when the same command runs again.
`--data` trains and scores on another procedural data set (`dsprites-procedural`'s one channel gets a one-channel
copy of each arm's preset).

`--report` adds to each recorded run (once, cached in the JSON) how well its concepts predict each factor
(`evaluation.concept_factors`, 2,000 images), prints a Markdown table of all arms and budgets, and draws
`cpu_ablation.png` (FactorVAE, DCI and factor accuracies per arm, one dot per seed) beside the JSON, with
each run's concept-factor map in its run folder.
"""

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

# One change each from the `cpu` preset as it was until 2026-12-05 (x0-prediction, logit-normal t with mean 1, L2, no
# edge weighting, lr 2e-3, batch 32, 10 concepts, a (16, 32, 64) UNet with cross-attention at 16x16 and 8x8): training
# flags, and edits of the preset's component configs ({component: {key: value}}), applied to a copy of the preset.
# The preset has since trained with the winners, `edge_loss_x10_t_mean_2` and then `edge_loss_x10_t_mean_2_grad_x100`;
# BASE_FLAGS, given before each arm's own flags, restore the old recipe, so that every arm and every recorded run keeps
# its meaning.
BASE_FLAGS = ["--timestep-logit-mean", "1", "--edge-loss-weight", "0", "--gradient-loss-weight", "0"]
ARMS = {
    "base": ([], {}),
    "uniform_t": (["--timestep-sampling", "uniform"], {}),
    "t_logit_mean_0": (["--timestep-logit-mean", "0"], {}),
    "released_objective": (["--prediction-type", "epsilon", "--loss", "l1", "--timestep-sampling", "uniform"], {}),
    "lr_1e-3": (["--learning-rate", "0.001"], {}),
    "warmup_1000": (["--lr-warmup-steps", "1000"], {}),
    "concepts_20": ([], {"concept_encoder": {"num_concepts": 20}}),
    # The tokens also read at 32x32, where the ~7-pixel object is; cross-attention only there (self-attention over
    # 1,024 positions made a step 6x slower).
    "cross_attention_32x32": ([], {"unet": {"down_block_types": ["CrossAttnDownBlock2D"] * 3,
                                             "up_block_types": ["CrossAttnUpBlock2D"] * 3,
                                             "only_cross_attention": [True, False, False]}}),
    "unet_wide": ([], {"unet": {"block_out_channels": [32, 64, 128]}}),
    "bf16_autocast": (["--mixed-precision", "bf16"], {}),
    # Skip Dropout (Jun et al., WACV 2025) with their p: the decoder must take detail from the tokens, not the skips.
    "skip_dropout": (["--skip-dropout", "0.2"], {}),
    # The paper's control: the tokens enter through the time embedding's scale-shift (AdaGN), not cross-attention.
    "adagn": (["--conditioning", "adagn"], {}),
    # The encoder learns 3x faster than the UNet.
    "encoder_lr_x3": (["--encoder-lr-multiplier", "3"], {}),
    # What the factor probe's shares point to: the loss weighted toward edges, where scale, shape and orientation are.
    "edge_loss_x10": (["--edge-loss-weight", "10"], {}),
    # The edge-weighted loss with more steps at high noise (logit-normal mean 2, the old recipe's is 1), where the noisy
    # image no longer shows the object's outline, so that only the tokens can tell the UNet where it is.
    "edge_loss_x10_t_mean_2": (["--edge-loss-weight", "10", "--timestep-logit-mean", "2"], {}),
    # The same pushed further toward noise (mean 3: 84% of the steps above t = 880, 16% above 982), the dose after mean 2.
    "edge_loss_x10_t_mean_3": (["--edge-loss-weight", "10", "--timestep-logit-mean", "3"], {}),
    # The recipe (mean 2) with multi-resolution noise (discount 0.8): white noise leaves the large-scale layout (the
    # camera's turn moves the wall corner) visible at nearly every timestep; noise at every scale hides it too.
    "edge_loss_x10_t_mean_2_multires": (["--edge-loss-weight", "10", "--timestep-logit-mean", "2", "--multires-noise-discount", "0.8"], {}),
    # The recipe plus a loss on the error's intensity gradient (the channel mean's steps, `gradient_loss_weight`): hues
    # at fixed saturation and value hardly move the channel mean, so this term pays the object and the camera's turn
    # more than the hues (`factor_probe.py --gradient-loss-weights`). The term starts at about 1.5x (x100) and 4x (x300)
    # the edge-weighted loss (the total at step 200: 0.49 and 0.95, against 0.20 without it). x100 is the recipe since 2026-12-05.
    "edge_loss_x10_t_mean_2_grad_x100": (["--edge-loss-weight", "10", "--timestep-logit-mean", "2", "--gradient-loss-weight", "100"], {}),
    # The recipe with each concept an angle (`token_mode="angle"`): one concept holds a hue's ring, which a scalar
    # concept holds only folded over two (Diagnostic 6), so the three hues no longer take six or more of the ten.
    "edge_loss_x10_t_mean_2_grad_x100_angle": (["--edge-loss-weight", "10", "--timestep-logit-mean", "2", "--gradient-loss-weight", "100",
                                                "--token-mode", "angle"], {}),
    "edge_loss_x10_t_mean_2_grad_x300": (["--edge-loss-weight", "10", "--timestep-logit-mean", "2", "--gradient-loss-weight", "300"], {}),
    # x300 gave the object its concepts but left one folded concept per hue (0.5-0.6); an angle holds a hue whole.
    "edge_loss_x10_t_mean_2_grad_x300_angle": (["--edge-loss-weight", "10", "--timestep-logit-mean", "2", "--gradient-loss-weight", "300",
                                                "--token-mode", "angle"], {}),
    # A diagnostic, not a recipe: nearly every step at pure noise (t >= 982 of 1000 for 97.5% of them), where the UNet sees
    # nothing of the image and must draw it from the tokens alone, as the decoder of an autoencoder.
    "edge_loss_x10_t_mean_6": (["--edge-loss-weight", "10", "--timestep-logit-mean", "6"], {}),
    # Both changes that give the object room and reason to be encoded: 20 concepts (the paper's N) and Skip Dropout.
    "concepts_20_skip_dropout": (["--skip-dropout", "0.2"], {"concept_encoder": {"num_concepts": 20}}),
    # 64x64 pixels: the preset with a 64x64 level in front, so that the 32, 16 and 8 levels keep their channels.
    "pixels_64x64": ([], {"concept_encoder": {"sample_size": 64},
                          "unet": {"sample_size": 64, "block_out_channels": [16, 16, 32, 64],
                                   "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                                   "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"]}}),
    # 64x64 images diffused as the 16x16 latents of a trained first stage (`--vae`), instead of 32x32 pixels, with
    # cross-attention at all three latent levels (16, 8, 4) as the paper's UNet has it.
    "latent_64x64": (["--vae", "{vae}"], {"model_index": {"vae": ["diffusers", "VQModel"]}, "concept_encoder": {"sample_size": 64},
                                         "unet": {"sample_size": 16, "down_block_types": ["CrossAttnDownBlock2D"] * 3,
                                                  "up_block_types": ["CrossAttnUpBlock2D"] * 3}}),
}
# The latent arm's first stage when no `--vae` is given: the `shapes3d` preset's VQModel (4x down, 3 latent channels,
# the released losses), made small enough to train on a CPU in minutes, with its codebook started from the encoder's
# latents (`codebook_init="data"`); trained for `--first-stage-minutes`.
SMALL_FIRST_STAGE = {"block_out_channels": [16, 32, 64], "layers_per_block": 1, "norm_num_groups": 8, "mid_block_add_attention": False}
HEADLINE = {"factor_vae.eval_accuracy": "FactorVAE", "dci.disentanglement": "DCI D", "dci.completeness": "DCI C",
            "mig.discrete_mig": "MIG", "beta_vae.eval_accuracy": "BetaVAE"}
# The factors whose accuracy the table shows: the object's (every arm predicts the hues; the picture shows all six).
TABLE_FACTORS = ["scale", "shape", "orientation"]
BATCH = 32
DATA = "shapes3d-procedural"
CHECKPOINT_EVERY = 500  # steps (16,000 images, about 9 minutes of one core): a stopped batch resumes from there
# `concept-diffusion` through this interpreter: also where the package is on PYTHONPATH without its console script.
CLI = [sys.executable, "-m", "concept_diffusion.cli"]
CPU_CORE = "one CPU core each"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--arms", default="base,uniform_t", help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--images", type=int, default=32000, help="images per run")
    parser.add_argument("--batch-size", type=int, default=BATCH, help=f"images per step (the `cpu` preset's {BATCH} unless changed)")
    parser.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1), help="runs at once, one core each")
    parser.add_argument("--first-core", type=int, default=0, help="the runs use cores first-core .. first-core + parallel - 1")
    parser.add_argument("--report", action="store_true", help="only report the recorded runs (see above)")
    parser.add_argument("--vae", default=None, help="trained first-stage folder for the latent arm (default: train SMALL_FIRST_STAGE)")
    parser.add_argument("--first-stage-minutes", type=float, default=8.0, help="training time of the small first stage, without --vae")
    parser.add_argument("--work-dir", default="outputs/cpu_ablation", help="run folders (and the report's default for runs without one)")
    parser.add_argument("--eval-every", type=int, default=0, help="steps between the trainer's fast FactorVAE / DCI scores (0: none)")
    parser.add_argument("--eval-samples", type=int, default=1000, help="training points of those scores")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop each training after this long (fewer images then)")
    parser.add_argument("--no-score", action="store_true", help="train only; score later with the same command")
    parser.add_argument("--data", default=DATA, help=f"the procedural data set every run trains on and is scored on (default {DATA})")
    parser.add_argument("--out", default=None, help="results JSON (default: results/cpu_ablation.json, cpu_ablation_DATA.json for other data)")
    args = parser.parse_args(argv)
    if args.out is None:
        name = "cpu_ablation.json" if args.data == DATA else f"cpu_ablation_{args.data}.json"
        args.out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", name)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown or not args.arms:
        parser.error(f"--arms: unknown {unknown or 'empty list'}; choose from {', '.join(ARMS)}")
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    if args.images < args.batch_size:
        parser.error(f"--images must be at least one batch ({args.batch_size})")
    return args


def copy_preset(source: str, folder: str, edits: dict, vae_config: str = None) -> str:
    """A fresh copy of preset `source` at `folder`, with `vae_config` (a config.json path) as its vae's config
    and each of `edits` ({component or "model_index": {key: value}}) merged into that component's config."""
    from concept_diffusion.atomic import write_json
    from concept_diffusion.presets import preset_folder

    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(preset_folder(source), folder)
    if vae_config is not None:
        os.makedirs(os.path.join(folder, "vae"), exist_ok=True)
        shutil.copy(vae_config, os.path.join(folder, "vae", "config.json"))
    for component, changes in edits.items():
        path = os.path.join(folder, "model_index.json" if component == "model_index" else os.path.join(component, "config.json"))
        with open(path) as file:
            config = json.load(file)
        write_json(path, {**config, **changes})
    return os.path.abspath(folder)


def arm_preset(arm: str, work_dir: str, vae: str = None, channels: int = 3) -> str:
    """"cpu", or a copy of the `cpu` preset with the arm's config edits (and the trained first stage's config), and
    for data with other than 3 channels (dSprites' 1) the encoder's and the UNet's channels set to theirs."""
    edits = ARMS[arm][1]
    if channels != 3:
        edits = {**edits, "concept_encoder": {**edits.get("concept_encoder", {}), "in_channels": channels},
                 "unet": {**edits.get("unet", {}), "in_channels": channels, "out_channels": channels}}
        arm = f"{arm}-{channels}ch"
    if not edits:
        return "cpu"
    vae_config = None
    if "vae" in edits.get("model_index", {}):
        if vae is None:
            raise SystemExit(f"--arms {arm}: pass the trained first stage with --vae FOLDER (`concept-diffusion train-vae`)")
        vae_config = os.path.join(vae, "config.json")
    return copy_preset("cpu", os.path.join(work_dir, "presets", arm), edits, vae_config)


def arm_flags(arm: str, vae: str = None) -> list:
    """The training flags of `arm`: BASE_FLAGS, then the arm's own (which win where they repeat one), `{vae}` filled in."""
    return [*BASE_FLAGS, *(flag.replace("{vae}", str(vae)) for flag in ARMS[arm][0])]


def train_small_first_stage(work_dir: str, minutes: float) -> str:
    """Train SMALL_FIRST_STAGE with `concept-diffusion train-vae` (on the machine's GPU if it has one, else all
    cores) once; returns its vae folder."""
    output_dir = os.path.join(work_dir, "first_stage")
    vae = os.path.join(output_dir, "vae")
    if os.path.isfile(os.path.join(vae, "config.json")):
        return vae
    preset = copy_preset("shapes3d", os.path.join(work_dir, "presets", "first_stage"), {"vae": SMALL_FIRST_STAGE})
    shutil.rmtree(output_dir, ignore_errors=True)
    print(f"training the small first stage for {minutes} minutes", flush=True)
    subprocess.run([*CLI, "train-vae", "--preset", preset, "--output-dir", output_dir, "--max-minutes", str(minutes),
                    "--max-steps", "1000000", "--batch-size", str(BATCH), "--checkpoint-every", "0", "--report-to", "none",
                    "--codebook-init", "data"],
                   check=True, stdout=open(output_dir + ".log", "w"), stderr=subprocess.STDOUT)
    return vae


def one_core(command: list, core: int) -> list:
    """The command pinned to `core` (modulo the machine's cores) with one thread (two runs on two cores never share one)."""
    return ["taskset", "-c", str(core % (os.cpu_count() or 1)), "env", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "NUMBA_NUM_THREADS=1", *command]


def run_all(jobs: list, parallel: int, first_core: int = 0) -> None:
    """Run (name, command, log path, done path) jobs, `parallel` at a time, each on a free core from `first_core` on;
    skip a job whose done path exists (a batch run again continues where it stopped); raise on a failure."""
    pending, running = [job[:3] for job in jobs if not os.path.exists(job[3])], {}
    while pending or running:
        free = [core for core in range(first_core, first_core + parallel) if core not in running]
        while pending and free:
            name, command, log = pending.pop(0)
            core = free.pop(0)
            print(f"start {name} on core {core}", flush=True)
            running[core] = (name, subprocess.Popen(one_core(command, core), stdout=open(log, "w"), stderr=subprocess.STDOUT), log)
        time.sleep(5)
        for core, (name, process, log) in list(running.items()):
            if process.poll() is not None:
                del running[core]
                if process.returncode != 0:
                    raise RuntimeError(f"{name} failed (exit {process.returncode}); see {log}")
                print(f"done {name}", flush=True)


@functools.lru_cache(maxsize=None)
def ground_truth(data: str, image_size: int):
    """The procedural data set at `image_size`, built once per size for all the runs a report maps."""
    from concept_diffusion import load_ground_truth

    return load_ground_truth(data, image_size=image_size)


def run_folder(work_dir: str, arm: str, seed: int, images: int, batch_size: int = BATCH, data: str = DATA) -> str:
    """The run's folder; budgets other than the first ablation's 20,000 images, batches other than 32 and data other
    than shapes3d-procedural are in the name."""
    return os.path.join(work_dir, f"{arm}-seed{seed}" + ("" if images == 20000 else f"-{images // 1000}k")
                        + ("" if batch_size == BATCH else f"-batch{batch_size}") + ("" if data == DATA else f"-{data}"))


def map_run(run: dict, work_dir: str) -> bool:
    """Add the run's per-factor accuracy and concept-factor map (PNG in the run folder); False if it had them."""
    if "factor_accuracy" in run:
        return False
    from concept_diffusion import ConceptEncoder
    from concept_diffusion.evaluation.concept_factors import map_concepts, plot_concept_factor_map

    folder = run.get("folder") or run_folder(work_dir, run["arm"], run["seed"], run["images"])
    encoder = ConceptEncoder.from_pretrained(os.path.join(folder, "pipeline", "concept_encoder")).eval()
    data = ground_truth(run.get("data", DATA), encoder.config.sample_size)
    concept_map = map_concepts(encoder, data, num_points=2000, seed=0)
    run["factor_accuracy"] = dict(zip(concept_map["factors"], concept_map["accuracy"].round(3).tolist()))
    run["concept_labels"] = concept_map["labels"]
    plot_concept_factor_map(concept_map["normalised_mutual_information"], concept_map["accuracy"], concept_map["factors"],
                            os.path.join(folder, "concept_factor_map.png"))
    return True


def report(args) -> int:
    """Map every recorded run (once), print the Markdown table and draw the picture."""
    from concept_diffusion.atomic import write_json

    with open(args.out) as file:
        recorded = json.load(file)
    for run in recorded["runs"]:
        if map_run(run, args.work_dir):
            write_json(args.out, recorded)  # after each run, so an interrupted report keeps what it mapped
    groups = {}
    for run in recorded["runs"]:
        arm = run["arm"] if run.get("batch_size", BATCH) == BATCH else f"{run['arm']}, batch {run['batch_size']}"
        groups.setdefault((arm, run["images"], run.get("hardware", CPU_CORE)), []).append(run)
    print("| arm | images | trained on | seeds | " + " | ".join(HEADLINE.values())
          + " | " + " | ".join(f"{name} acc." for name in TABLE_FACTORS) + " | ms/image per run |")
    print("|---|---:|---|---:|" + "---|" * (len(HEADLINE) + len(TABLE_FACTORS)) + "---:|")
    for (arm, images, where), runs in groups.items():
        cells = [spread([r["scores"][key] for r in runs]) for key in HEADLINE]
        cells += [spread([r["factor_accuracy"][name] for r in runs]) for name in TABLE_FACTORS]
        ms = statistics.mean(r["ms_per_image_one_core"] for r in runs)
        print(f"| {arm} | {images:,} | {where} | {len(runs)} | " + " | ".join(cells) + f" | {ms:.2f} |")
    png_path = os.path.splitext(args.out)[0] + ".png"
    plot_ablation(groups, list(recorded["runs"][0]["factor_accuracy"]), png_path)
    print(f"wrote {args.out} and {png_path}")
    return 0


def spread(values: list) -> str:
    """ "mean (min..max)" of the seeds' values."""
    return f"{statistics.mean(values):.3f} ({min(values):.2f}..{max(values):.2f})"


def plot_ablation(groups: dict, factors: list, png_path: str) -> None:
    """One row per (arm, budget); panels FactorVAE, DCI disentanglement and each factor's accuracy; a dot per seed."""
    from matplotlib.figure import Figure

    from concept_diffusion.atomic import atomic_path

    panels = [("FactorVAE", lambda r: r["scores"]["factor_vae.eval_accuracy"]),
              ("DCI disentanglement", lambda r: r["scores"]["dci.disentanglement"])]
    panels += [(f"{name}: accuracy from the concepts", lambda r, name=name: r["factor_accuracy"][name]) for name in factors]
    labels = [f"{arm} ({images // 1000}k, " + ("CPU" if where == CPU_CORE else "GPU") + ")" for arm, images, where in groups]
    cols = 4
    rows = -(-len(panels) // cols)
    figure = Figure(figsize=(16, rows * (1.0 + 0.42 * len(groups))))
    axes = list(figure.subplots(rows, cols, sharey=True, squeeze=False).flat)
    for axis, (title, value) in zip(axes, panels):
        for row, runs in enumerate(groups.values()):
            values = [value(r) for r in runs]
            axis.plot(values, [row] * len(values), "o", color="tab:blue", alpha=0.7)
            axis.plot([statistics.mean(values)], [row], "|", color="black", markersize=14)
        axis.set_title(title, fontsize=10)
        axis.set_xlim(0, 1.02)
        axis.grid(axis="x", alpha=0.3)
        axis.set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()  # shared by all panels
    for axis in axes[len(panels):]:
        axis.axis("off")
    figure.suptitle("CPU ablation of the `cpu` preset: a dot per seed, a bar at the mean (exact metrics at full sizes)", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title above the panels
    with atomic_path(png_path, ".png") as temporary:
        figure.savefig(temporary, dpi=110)


def merged_results(path: str, results: list) -> dict:
    """Earlier runs in `path` (other arms, seeds or budgets) kept, this batch's runs added or replaced."""
    runs = []
    if os.path.isfile(path):
        with open(path) as file:
            runs = json.load(file)["runs"]
    fresh = {(r["arm"], r["seed"], r["images"]) for r in results}
    runs = [r for r in runs if (r["arm"], r["seed"], r["images"]) not in fresh] + results
    return {"arms": {arm: {"flags": flags, "configs": configs} for arm, (flags, configs) in ARMS.items()}, "runs": runs}


SCORE = """
import json, sys
from concept_diffusion import ConceptEncoder, evaluate, load_ground_truth
encoder = ConceptEncoder.from_pretrained(sys.argv[1]).eval()
data = load_ground_truth(sys.argv[3], image_size=encoder.config.sample_size)
scores = evaluate(encoder, data, metrics=["factor_vae", "dci", "mig", "sap", "modularity", "beta_vae"], seed=0, progress=False)
json.dump(scores, open(sys.argv[2], "w"), indent=2)
"""


def train_commands(args, runs: list) -> list:
    """(name, command, log, done path) of each run's `concept-diffusion train`."""
    if args.vae is None and any("model_index" in ARMS[arm][1] for arm, _, _ in runs):
        args.vae = train_small_first_stage(args.work_dir, args.first_stage_minutes)
    channels = ground_truth(args.data, 8).num_channels
    presets = {arm: arm_preset(arm, args.work_dir, args.vae, channels) for arm in args.arms}
    flags = {arm: arm_flags(arm, args.vae and os.path.abspath(args.vae)) for arm in args.arms}
    common = ["--data", args.data, "--max-steps", str(args.images // args.batch_size), "--batch-size", str(args.batch_size),
              "--eval-every", str(args.eval_every), "--eval-samples", str(args.eval_samples), "--eval-final", "false",
              "--checkpoint-every", str(CHECKPOINT_EVERY), "--report-to", "none"]
    if args.max_minutes is not None:
        common += ["--max-minutes", str(args.max_minutes)]
    return [(f"{arm} seed {seed}", [*CLI, "train", "--preset", presets[arm], *common, "--seed", str(seed),
                                     "--output-dir", folder, *flags[arm], *resume_flags(folder)],
             folder + ".train.log", os.path.join(folder, "run.json")) for arm, seed, folder in runs]


def resume_flags(folder: str) -> list:
    """`--resume latest` for a run that a stopped batch left with a checkpoint: the same command continues it."""
    from concept_diffusion.training.checkpoints import list_checkpoints

    return ["--resume", "latest"] if os.path.isdir(folder) and list_checkpoints(folder) else []


def hardware(run: dict) -> str:
    """Where a run trained (its run.json's device), for the cost column: one CPU core, or a GPU shared by the batch."""
    device = run.get("device", "cpu")
    return CPU_CORE if device == "cpu" else f"{device}, shared by the batch's runs"


def print_batch(results: list, arms: list) -> None:
    print("\nexact metrics (mean over seeds, min..max)")
    print(f"{'arm':<22}{'images':>10}" + "".join(f"{name:>22}" for name in HEADLINE.values()) + f"{'ms/image':>10}")
    for arm in arms:
        mine = [r for r in results if r["arm"] == arm]
        cells = [spread([r["scores"][key] for r in mine]) for key in HEADLINE]
        images = statistics.mean(r["images"] for r in mine)
        print(f"{arm:<22}{images:>10,.0f}" + "".join(f"{cell:>22}" for cell in cells)
              + f"{statistics.mean(r['ms_per_image_one_core'] for r in mine):>10.1f}")


def main(argv=None) -> int:
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    if args.report:
        return report(args)
    os.makedirs(args.work_dir, exist_ok=True)
    runs = [(arm, seed, run_folder(args.work_dir, arm, seed, args.images, args.batch_size, args.data))
            for arm in args.arms for seed in args.seeds]
    for _, _, folder in runs:
        if os.path.isdir(folder) and not os.path.exists(os.path.join(folder, "run.json")) and not resume_flags(folder):
            shutil.rmtree(folder)  # an unfinished run without a checkpoint starts again from scratch
    started = time.monotonic()
    run_all(train_commands(args, runs), args.parallel, args.first_core)
    train_seconds = time.monotonic() - started
    if args.no_score:
        return 0
    score = [(f"score {arm} seed {seed}", [sys.executable, "-c", SCORE, os.path.join(folder, "pipeline", "concept_encoder"),
                                           folder + ".scores.json", args.data], folder + ".score.log", folder + ".scores.json")
             for arm, seed, folder in runs]
    run_all(score, min(args.parallel, os.cpu_count() or 1), args.first_core)
    command = " ".join(["python", "benchmarks/cpu_ablation.py", *(argv if argv is not None else sys.argv[1:])])
    results = []
    for arm, seed, folder in runs:
        with open(os.path.join(folder, "run.json")) as file:
            run = json.load(file)
        with open(folder + ".scores.json") as file:
            scores = json.load(file)
        results.append({"arm": arm, "seed": seed, "data": args.data, "images": run["images_seen"], "batch_size": args.batch_size,
                        "seconds": run["seconds"],
                        "folder": os.path.abspath(folder),
                        "ms_per_image_one_core": round(1000 * run["seconds"] / run["images_seen"], 2), "scores": scores,
                        "command": command, "train_wall_seconds_of_batch": round(train_seconds, 1), "hardware": hardware(run)})
    print_batch(results, args.arms)
    write_json(args.out, merged_results(args.out, results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
