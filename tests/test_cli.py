"""The command line: flags users know from diffusers' scripts, help that shows what will train, hub verbs."""

import json

import pytest

from concept_diffusion.cli import main as cli_main
from concept_diffusion.cli.hub import push_arguments
from concept_diffusion.cli.train import parse_config, resolve_hub_repo, train_config
from concept_diffusion.training import AutoencoderTrainingConfig


def option_help(text: str, flag: str) -> str:
    """The help paragraph of `flag` in argparse's --help output (one option, its wrapped lines joined)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(flag + " "))
    paragraph = [lines[start]]
    for line in lines[start + 1:]:
        if line.startswith("  -"):
            break
        paragraph.append(line)
    return " ".join(" ".join(paragraph).split())


def test_train_help_shows_the_presets_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--help"])  # the default preset is cpu: batch 32, lr 2e-3 from its training.json
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "(default: 32)" in option_help(text, "--batch_size")
    assert "(default: 0.002)" in option_help(text, "--learning_rate")
    assert "(default: cars3d)" in option_help(cli_help(capsys, ["train", "--preset", "cars3d", "--help"]), "--preset")
    assert "(default: 0.000256)" in option_help(cli_help(capsys, ["train", "--preset", "cars3d", "--help"]), "--learning_rate")


def cli_help(capsys, argv) -> str:
    with pytest.raises(SystemExit):
        cli_main(argv)
    return capsys.readouterr().out


def test_flags_take_diffusers_spellings(tmp_path):
    flags = ["--preset", "tiny", "--output_dir", str(tmp_path / "run"), "--train_batch_size", "4", "--max_train_steps", "3",
             "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest", "--push_to_hub", "--hub_model_id", "me/encdiff",
             "--mixed_precision", "bf16"]
    config = train_config(flags)
    assert (config.output_dir, config.batch_size, config.max_steps, config.checkpoint_every, config.resume) == (
        str(tmp_path / "run"), 4, 3, 2, "latest")
    assert config.mixed_precision == "bf16"
    assert config.push_to_hub == "me/encdiff"
    same = train_config(["--preset", "tiny", "--output-dir", str(tmp_path / "run"), "--batch-size", "4"])
    assert (same.output_dir, same.batch_size) == (config.output_dir, 4)


def test_flags_override_the_config_file_which_overrides_the_preset(tmp_path):
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"learning_rate": 0.01, "loss": "l1", "eval_metrics": ["mig"]}))
    config = train_config(["--config", str(config_file), "--loss", "l2", "--max_steps", "none", "--max_minutes", "1",
                           "--eval_metrics"])
    assert (config.preset, config.batch_size) == ("cpu", 32)  # the cpu preset's training.json
    assert (config.learning_rate, config.loss) == (0.01, "l2")
    assert config.max_steps is None and config.eval_metrics == []
    assert config.mixed_precision is None  # accelerate launch / accelerate config decide


def test_bad_flags_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="loss must be"):
        train_config(["--loss", "huber"])
    with pytest.raises(ValueError, match="--hub_model_id me/x without --push_to_hub"):
        resolve_hub_repo(None, "me/x", "runs/a")
    with pytest.raises(ValueError, match="name different repos"):
        resolve_hub_repo("me/a", "me/b", "runs/a")
    assert resolve_hub_repo("", None, "runs/encdiff-cpu/") == "encdiff-cpu"  # diffusers: the output_dir's name
    assert cli_main(["train", "--preset", "no-such-preset", "--help"]) == 2
    stage1, _ = parse_config(AutoencoderTrainingConfig, ["--preset", "tiny", "--max_train_steps", "7"], "train-vae", "")
    assert stage1.max_steps == 7 and stage1.mixed_precision is None


def test_push_and_pull_read_like_hf_upload_and_download(tmp_path, capsys):
    folder = tmp_path / "saved"
    folder.mkdir()
    assert push_arguments("me/encdiff", str(folder)) == ("me/encdiff", str(folder))
    assert push_arguments(str(folder), "me/encdiff") == ("me/encdiff", str(folder))  # the older FOLDER REPO_ID order
    parser_help = cli_help(capsys, ["pull", "--help"])
    assert "--local-dir" in parser_help and "--out" in parser_help
    assert "repo_id [path]" in cli_help(capsys, ["push", "--help"])


def test_unknown_flags_of_other_commands_are_refused(capsys):
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "some/model", "--data", "x", "--no-such-flag"])
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
