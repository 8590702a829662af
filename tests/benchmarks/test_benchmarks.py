"""benchmarks/: every benchmark runs at its --smoke size and prints its numbers; `all` and --list."""
import re
import subprocess

import pytest
import torch

from benchmarks.__main__ import BENCHMARKS, main
from lib.utils.cpu_capabilities import read_capabilities
from shared import ROOT

F = r"\d+\.\d+"
# detect's default modes on this CPU: fp32 and the natively run bf16 and int8 (an emulated bf16 is left out).
NATIVE = [p for p in ("fp32", "bf16", "int8") if p in read_capabilities().native()]
# benchmark: (options added to --smoke, lines its output must hold)
SMOKE_RUNS = {
    "detect": ([], [r"^reference 3x3 conv 512->512 @10x15: "
                    + ", ".join(f"{F} GFLOP/s {m}" for m in NATIVE if m != "int8") + r"; int8's % of ref is of fp32's$",
                    r"^cpu: .+, torch capability \w+.*; flags: .+; native: .+$",
                    *[rf"^ {mode}      64x96 +{F} +{F}\.\.{F} +{F}% +{F} +\d+% +{F}x +\d+$" for mode in NATIVE],
                    *[rf"^ +64x96 {mode} head drift vs fp32 \(max\|diff\|/max\|value\|\): \d\.\d\de-\d\d$"
                      for mode in NATIVE[1:]]]),
    "deploy": ([], [rf"^ +64x96 +{F} +{F} +{F}x +\d\.\d\de-\d\d$", r"^batched detection at 64x96, images/s$",
                    rf"^ +2 +{F} +{F}$"]),
    "quantize": ([], [r"^fp32 +(0\.00e\+00 +){6} +\d\.\d{3} +1\.00x$",
                      rf"^minmax:none +(\d\.\d\de-\d\d +){{6}}\d+ +\d+ +{F} +{F} +{F} +{F}x$",
                      rf"^minmax:heads +(\d\.\d\de-\d\d +){{6}}\d+ +\d+ +{F} +{F} +{F} +{F}x$"]),
    "train": ([], [rf"^ +64x96( +{F}){{6}}$",
                   rf"^loader \(generated JPEGs, scale 1200/1600\), 1 workers: {F} images/s, {F} images/s per "
                   r"worker$"]),
    "distributed": ([], [rf"^ +2 +1 +{F} +{F} +{F} +1\.00 +100%$"]),
    "targets": ([], [rf"^  10 faces  anchor_targets m1 \(60000 anchors\): +{F} ms$",
                     rf"^1000 faces  ssh_losses \(targets \+ 6 losses\): +{F} ms$"]),
    "nms": ([], [rf"^ +1000 +{F} +{F}$"]),
    "loader": ([], [rf"^0 workers: {F} images/s per worker \({F} ms/image: decode {F} ms, "
                    rf"flip/mean/resize/tensor {F} ms\)$"]),
    "evaluation": ([], [r"^images 20, detections 760$",
                        rf"^ground truth {F} s, reading {F} s, evaluation {F} s, total {F} s$",
                        rf"^easy {F}  medium {F}  hard {F}$"]),
    "fddb": ([], [r"^images 30, faces 55, detections \d+, ROC points \d+$",
                  rf"^read \+ evaluate {F} s, ROC files {F} s, evaluate in memory {F} s$",
                  rf"^TPR at 1000 / 2000 FP: discrete {F} / {F}, continuous {F} / {F}$"]),
    "anonymize": ([], [rf"^pixelate  ellipse +{F}$",
                       rf"^outputs of one frame \(drawn \+ blurred \.mp4, text, JSON\): {F} ms$"]),
    "memory": ([], [r"^read_image \+ prep_image +\d+(\.\.\d+)? +\d+(\.\.\d+)?$",
                    rf"^300 x 450 at scale 0\.178: whole +{F}, rows read +{F}, ratio {F}$"]),
    "pipeline": ([], [r"^.+ CPU capability \w+, \d+ network threads \(default\)$",
                      r"^3 JPEGs \(\d+\.\d+ MB, quality 95\) of .+ at 120x160$",
                      r"^outputs: the drawn picture and the text file of each image$",
                      *[rf"^ {mode} +{workers} +{F} +{F} +{F} +{F} +{F} +\d+% +\d+% +\d+$"
                        for mode in ("fp32", "int8") for workers in (0, 1)]]),
}


def test_every_benchmark_has_a_smoke_run():
    assert list(SMOKE_RUNS) == list(BENCHMARKS)


@pytest.mark.parametrize("name", SMOKE_RUNS)
def test_smoke_run_prints_numbers(name, capsys):
    options, lines = SMOKE_RUNS[name]
    with torch.random.fork_rng():
        assert main([name, "--smoke", *options]) == 0
    out = capsys.readouterr().out
    for line in lines:
        assert re.search(line, out, re.M), f"{name}: no line matches {line!r} in:\n{out}"


def test_detect_leaves_out_and_marks_emulated_modes(monkeypatch, capsys):
    """On an AVX2-only CPU (faked) bf16 is left out of detect's default with a note, and marked * when asked for."""
    from benchmarks.detect import choose_precisions, print_rows
    from benchmarks.utils import Timing
    from cpus import ZEN3, ZEN4

    cpu = torch.device("cpu")
    assert choose_precisions(None, cpu, ZEN4) == ["fp32", "bf16", "int8"]
    assert capsys.readouterr().out == ""
    assert choose_precisions(None, cpu, ZEN3) == ["fp32", "int8"]
    assert capsys.readouterr().out.startswith("note: bf16 left out, bf16 is emulated on this CPU (torch AVX2, ")
    assert choose_precisions(["bf16"], cpu, ZEN3) == ["fp32", "bf16"]
    timings = {p: (Timing(1.0, 1.0, 1.0), 0.5) for p in ("fp32", "bf16")}
    print_rows("64x96", 1e9, timings, {"fp32": 10.0, "bf16": 10.0}, {"fp32": 1, "bf16": 1}, emulated={"bf16": "..."})
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["fp32", "bf16*"]


def test_list_names_every_benchmark_with_a_line(capsys):
    assert main(["--list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split()[0] for row in rows] == list(BENCHMARKS)
    assert all(len(row.split()) > 3 for row in rows)


def test_all_runs_each_benchmark_in_its_own_process_and_reports_failures(monkeypatch, capsys):
    commands = []

    def fake_run(command, cwd):
        commands.append(command[1:])
        return subprocess.CompletedProcess(command, 1 if command[3] == "nms" else 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert main(["all", "--smoke"]) == 1
    assert commands == [["-m", "benchmarks", name, *options, "--smoke"] for name, options in BENCHMARKS.items()]
    out = capsys.readouterr().out
    assert re.search(r"^nms +FAILED \(exit 1\) +\d+\.\d s$", out, re.M)
    assert re.search(r"^detect +ok +\d+\.\d s$", out, re.M)


def test_a_bad_option_is_one_error_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--smoke", "nms"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: options go after the benchmark's name: python3 -m benchmarks nms [options]\n"


def test_the_library_and_scripts_do_not_import_benchmarks():
    files = [*ROOT.glob("lib/**/*.py"), *ROOT.glob("model/**/*.py"), *ROOT.glob("*.py")]
    importers = [str(f.relative_to(ROOT)) for f in files
                 if re.search(r"^\s*(from|import) benchmarks\b", f.read_text(), re.M)]
    assert importers == []
