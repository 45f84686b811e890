"""The config schema: every key known, types and ranges checked, the lab's names as aliases, and a
bad config refused by train.py with one line, exit status 1 and nothing written."""
import copy
import math

import pytest
import yaml

from conftest import ROOT, run_script
from configuration.schema import (decrement_schedule, parse_decrement, parse_quantization_config,
                                  validate_config)
from utils.errors import UserError

LAB_CONFIG = ROOT.parent / "shared" / "reference" / "lab-code" / "config_lenet5_keywords.yml"


def default_config():
    return yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())


def error_of(mutate):
    cfg = default_config()
    mutate(cfg)
    with pytest.raises(UserError) as error:
        validate_config(cfg)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_shipped_config_is_valid_and_unchanged_by_validation():
    cfg = default_config()
    assert validate_config(cfg) == cfg


def test_the_default_data_is_speech_commands_downloaded_under_data():
    args = default_config()["data_loader"]["args"]
    assert args["data_dir"] == "data/speech_commands_v0.02" and args["download"] == "v0.02"


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["trainer"].update(epochz=50), "config key trainer.epochz is not known; did you mean trainer.epochs?"),
    (lambda c: c.update(bogus=1), "config key bogus is not known (known: name, n_gpu, seed"),
    (lambda c: c.update(lr_schedulr=None), "config key lr_schedulr is not known; did you mean lr_scheduler?"),
    (lambda c: c["data_loader"]["args"].update(keyword=["one"]),
     "config key data_loader.args.keyword is not known; did you mean data_loader.args.keywords?"),
    (lambda c: c["optimization"].update(quantisation={}),
     "config key optimization.quantisation is not known; did you mean optimization.quantization?"),
    (lambda c: c["data_loader"]["args"].update(keywords="one"),
     "config data_loader.args.keywords must be a list of words such as [one, two, three], found 'one'"),
    (lambda c: c["data_loader"]["args"].update(keywords=["one", "two", "one"]),
     "config data_loader.args.keywords names ['one'] more than once"),
    (lambda c: c["data_loader"]["args"].update(keywords=["one", "two"]),
     "config arch.args.num_classes is 4 but 2 keywords give 3 classes"),
    (lambda c: c["data_loader"]["args"].update(batch_size=0),
     "config data_loader.args.batch_size must be an integer >= 1, found 0"),
    (lambda c: c["optimizer"]["args"].update(lr=0), "config optimizer.args.lr must be a number in (0, inf], found 0"),
    (lambda c: c["optimizer"].update(type="Adamm"), "config optimizer.type 'Adamm' is not a torch optimizer class in torch.optim; "
                                                    "did you mean Adam?"),
    (lambda c: c["trainer"].update(class_weights=[1, 2]), "config trainer.class_weights has 2 entries for 4 classes"),
    (lambda c: c["trainer"].update(ema=1.0), "config trainer.ema must be a number in (0, 1), found 1.0"),
    (lambda c: c["trainer"].update(monitor="max val_top5"), "config trainer.monitor must be 'off' or 'min|max <metric>'"),
    (lambda c: c["data_loader"]["args"]["augment"].update(bandlimit_prob=1.5),
     "config data_loader.args.augment.bandlimit_prob must be a number in [0, 1], found 1.5"),
    (lambda c: c["data_loader"]["args"]["augment"].update(spec_time_masks=1.5),
     "config data_loader.args.augment.spec_time_masks must be an integer >= 0, found 1.5"),
    (lambda c: c["optimization"]["finetuning"].update(distillation={"temperature": 0}),
     "config optimization.finetuning.distillation.temperature must be a number in [0.01, inf], found 0"),
    (lambda c: c["optimization"]["finetuning"].update(distillation={"alpha": 1.5}),
     "config optimization.finetuning.distillation.alpha must be a number in [0, 1], found 1.5"),
    (lambda c: c["optimization"]["quantization"].update(metric="top5"),
     "quantization metric must be one of top1, balanced_accuracy, stream_recall_at_target, stream_mean_recall, found 'top5'"),
    (lambda c: c["optimization"]["pruning"].update(metric="f1"),
     "pruning metric must be one of top1, balanced_accuracy, stream_recall_at_target, stream_mean_recall, found 'f1'"),
    (lambda c: c["optimization"].update(quantizer={}),
     "config optimization.quantizer is the lab's name of optimization.quantization, and both are given"),
    (lambda c: c["data_loader"].update(type="MnistDataLoader"),
     "config data_loader.type must be one of SpeechCommandsDataLoader, KeywordDataLoader"),
])
def test_bad_configs_name_the_key_in_one_line(mutate, message):
    assert message in error_of(mutate)


def test_keys_the_lead_uses_are_accepted():
    cfg = default_config()
    cfg["trainer"].update(monitor="max val_balanced_accuracy", ema=0.999)
    cfg["data_loader"]["args"]["augment"].update(spec_time_masks=2, spec_time_width=10, spec_freq_masks=1,
                                                 spec_freq_width=3, bandlimit_prob=0.2)
    cfg["optimization"]["quantization"]["metric"] = "balanced_accuracy"
    cfg["optimization"]["pruning"]["metric"] = "top1"
    cfg["optimization"]["finetuning"].update(distillation={"enabled": True, "temperature": 4.0, "alpha": 0.5,
                                                           "teacher": None})
    assert validate_config(cfg) == cfg


def test_the_lab_config_means_what_it_meant():
    lab = yaml.safe_load(LAB_CONFIG.read_text())
    cfg = validate_config(lab)
    assert cfg["optimization"]["quantization"] == {"error_margin": 15, "decrement": "lambda bw: bw//2"}
    assert cfg["optimization"]["pruning"] == {"error_margin": 3}
    assert "quantizer" not in cfg["optimization"] and "pruner" not in cfg["optimization"]
    assert cfg["seed"] == 101                                   # its shuffle seed seeds the run
    assert "seed" not in cfg["data_loader"]["args"]
    assert "validation_split" not in cfg["data_loader"]["args"]  # its 'None' (a string in YAML)
    assert cfg["data_loader"]["args"]["num_workers"] == 4
    quant = parse_quantization_config(cfg["optimization"]["quantization"])
    assert quant.error_margin == 15.0 and quant.bitwidths == [16, 8, 4, 2]
    assert lab["optimization"]["quantizer"]["error_margin"] == 15  # the input is not modified


@pytest.mark.parametrize("text, parsed, schedule", [
    ("lambda bw: bw//2", ("div", 2), [16, 8, 4, 2]),
    ("lambda x : x // 3", ("div", 3), [16, 5]),
    ("lambda bw: bw - 2", ("sub", 2), [16, 14, 12, 10, 8, 6, 4, 2]),
    ("lambda bw: bw-5", ("sub", 5), [16, 11, 6]),
])
def test_decrement_forms_map_to_schedules(text, parsed, schedule):
    assert parse_decrement(text) == parsed
    assert decrement_schedule(parsed, 16, 2) == schedule
    assert parse_quantization_config({"decrement": text}).bitwidths == schedule


def test_other_decrements_are_refused_and_never_evaluated(tmp_path):
    marker = tmp_path / "evaluated"
    payloads = [f"lambda bw: open({str(marker)!r}, 'w') and bw // 2", "lambda bw: bw * 2", "lambda bw: bw // 1",
                "lambda bw: bw - 0", "lambda bw: 2 // bw", "lambda a, b: a // 2", "lambda bw: bw // 2.0",
                "__import__('os').system('touch x')", "bw // 2", 3]
    for text in payloads:
        with pytest.raises(UserError, match="only 'lambda bw: bw // K' or 'lambda bw: bw - K'"):
            parse_quantization_config({"decrement": text})
    assert not marker.exists()
    with pytest.raises(UserError, match="both the lab's decrement and schedule"):
        parse_quantization_config({"decrement": "lambda bw: bw//2", "schedule": [8, 4]})


# --- train.py with a bad config: one line, status 1, no run folder ---------------------------------

def _bad(section, key, value):
    def mutate(cfg):
        (cfg if section is None else cfg[section] if "." not in section
         else cfg[section.split(".")[0]][section.split(".")[1]])[key] = value
    return mutate


@pytest.mark.parametrize("flags, mutate, expected", [
    (["--bs", "0"], None, "data_loader.args.batch_size must be an integer >= 1, found 0"),
    (["--bs", "-4"], None, "data_loader.args.batch_size must be an integer >= 1, found -4"),
    (["--lr", "-1"], None, "optimizer.args.lr must be a number in (0, inf], found -1.0"),
    ([], _bad("trainer", "epochs", "two"), "trainer.epochs must be an integer >= 1, found 'two'"),
    ([], _bad("trainer", "epochs", -1), "trainer.epochs must be an integer >= 1, found -1"),
    ([], _bad("trainer", "monitor", "min"), "trainer.monitor must be 'off' or 'min|max <metric>'"),
    ([], _bad("trainer", "save_period", 0), "trainer.save_period must be an integer >= 1, found 0"),
    ([], _bad("data_loader.args", "eval_batch_size", 0), "eval_batch_size must be an integer >= 1, found 0"),
    ([], _bad("data_loader.args", "features", {"n_mfcc": 0}),
     "data_loader.args.features.n_mfcc must be an integer >= 1, found 0"),
    ([], _bad("optimization", "quantization", {"start_bitwidth": 64}),
     "quantization start_bitwidth must be an integer from 2 to 32, found 64"),
    ([], _bad("optimization", "quantization", {"bits_accumulator": 1}),
     "quantization bits_accumulator must be an integer from 2 to 53, found 1"),
    ([], _bad("optimization", "quantization", {"schedule": [16, 8, 1]}),
     "quantization schedule entry must be an integer from 2 to 32, found 1"),
    ([], _bad("optimization", "quantizer", {"decrement": "lambda bw: exec('x')"}), "decrement"),
])
def test_train_refuses_a_bad_config_before_writing_anything(tmp_path, corpus_dir, flags, mutate, expected):
    cfg = default_config()
    cfg["data_loader"]["args"].update(data_dir=str(corpus_dir), download=None)
    cfg["trainer"]["save_dir"] = str(tmp_path / "saved")
    if mutate is not None:
        mutate(cfg)
        cfg["optimization"] = {k: v for k, v in cfg["optimization"].items()
                               if not (k == "quantization" and "quantizer" in cfg["optimization"])}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(copy.deepcopy(cfg)))
    proc = run_script("train.py", "-c", path, *flags, check=False, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "saved").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yml"]


def test_the_typed_sections_hold_the_shipped_values_and_the_defaults():
    from configuration.schema import (DetectorConfig, DistillationConfig, FinetuningConfig, TeachersConfig,
                                      parse_detector_config, parse_finetuning_config, parse_run_config,
                                      parse_trainer_config)
    cfg = validate_config(default_config())
    trainer = parse_trainer_config(cfg["trainer"])
    assert (trainer.epochs, trainer.save_period, trainer.monitor, trainer.early_stop, trainer.ema) == \
        (120, 20, "max val_balanced_accuracy", 40, 0.995)
    assert trainer.class_weights == (1, 1.5, 1.5, 1.5) and trainer.distillation == TeachersConfig(0, 2.0, 0.8)
    assert parse_finetuning_config(cfg) == FinetuningConfig(20, 0.1, "max val_stream_mean_recall",
                                                            DistillationConfig(True, 4.0, 0.5, None))
    assert parse_detector_config(cfg["detector"]) == DetectorConfig(1.0, 1.0, 0, (300.0, 500.0, 700.0))
    assert parse_detector_config(None) is None
    assert (parse_run_config(cfg).num_classes, parse_run_config(cfg).deterministic) == (4, True)
    bare = parse_trainer_config({"epochs": 3})
    assert (bare.save_dir, bare.save_period, bare.monitor, bare.tensorboard, bare.ema, bare.class_weights) == \
        ("saved", 1, "off", True, None, None)
    assert parse_finetuning_config({}) == FinetuningConfig(20, 0.1, None, DistillationConfig(False, 4.0, 0.5, None))


@pytest.mark.parametrize("section, message", [
    ({"epochs": 0}, "config optimization.finetuning.epochs must be an integer >= 1, found 0"),
    ({"distillation": {"alpha": 1.5}}, "config optimization.finetuning.distillation.alpha must be a number in [0, 1], found 1.5"),
    ({"distillation": {"tempreature": 2}},
     "config key optimization.finetuning.distillation.tempreature is not known; did you mean "
     "optimization.finetuning.distillation.temperature?"),
])
def test_a_finetuning_recipe_read_before_validation_gets_the_schemas_message(section, message):
    """train.py -r CKPT -q reads the finetuning recipe from the raw config before validate_config:
    the same check, the same line."""
    from types import SimpleNamespace
    from trainer.finetuning import finetune_config
    cfg = default_config()
    cfg["optimization"]["finetuning"] = section
    with pytest.raises(UserError) as error:
        finetune_config(cfg, SimpleNamespace(finetuned_from=None, config=cfg))
    assert str(error.value) == message


def test_more_classes_than_a_checkpoint_holds_is_refused_by_the_schema():
    from utils.checkpoint_checks import MAX_CLASSES
    words = [f"w{i}" for i in range(MAX_CLASSES)]
    message = error_of(lambda c: (c["data_loader"]["args"].update(keywords=words),
                                  c["arch"]["args"].update(num_classes=MAX_CLASSES + 1)))
    assert message == f"config arch.args.num_classes must be at most {MAX_CLASSES}, found {MAX_CLASSES + 1}"


def test_a_finetuning_rate_is_bounded_like_a_configs_and_lr_replaces_it():
    """lr_factor x the float run's rate must lie in (0, MAX_LR] like optimizer.args.lr (1e38 x
    1000 would overflow the float32 step); train.py's --lr gives the rate instead of the product."""
    from types import SimpleNamespace
    from trainer.finetuning import finetune_config
    cfg = default_config()
    cfg["optimizer"]["args"]["lr"] = 1e38
    cfg["optimization"]["finetuning"]["lr_factor"] = 1000
    ckpt = SimpleNamespace(finetuned_from=None, config=cfg)
    with pytest.raises(UserError) as error:
        finetune_config(cfg, ckpt)
    assert str(error.value) == ("the finetuning learning rate, optimization.finetuning.lr_factor (1000) x the float "
                                "run's rate (1e+38), is 1e+41, outside (0, 1e+38]; change lr_factor or give the "
                                "rate with --lr")
    config, base_lr = finetune_config(cfg, ckpt, lr=0.01)
    assert config["optimizer"]["args"]["lr"] == 0.01 and base_lr == 1e38
    cfg["optimizer"]["args"]["lr"] = 0.003
    cfg["optimization"]["finetuning"]["lr_factor"] = 0.1
    assert math.isclose(finetune_config(cfg, ckpt)[0]["optimizer"]["args"]["lr"], 0.0003)
