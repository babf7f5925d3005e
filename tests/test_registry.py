"""The algorithm registry: every entry resolves to a config with its model kind, a harness class, a config folder and
a CLI choice; config imports no algorithm; an unknown name is a named error."""

import subprocess
import sys

import pytest

from offline_mbrl.algos.base import Algorithm
from offline_mbrl.algos.harness import algorithm_class
from offline_mbrl.algos.pal_mal import GameLoop
from offline_mbrl.cli import main
from offline_mbrl.config import CONFIG_DIR, resolve
from offline_mbrl.errors import ConfigError
from offline_mbrl.models import MODEL_CLASSES
from offline_mbrl.registry import ALGORITHMS, algorithm_entry


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_entry_is_complete(name):
    entry = ALGORITHMS[name]
    assert issubclass(algorithm_class(name), Algorithm if entry.loop == "sac" else GameLoop)
    assert entry.model in MODEL_CLASSES and (CONFIG_DIR / entry.config_folder).is_dir()
    config = resolve(name, dataset="x")
    assert config.algo == name and config.dynamics.model == (entry.model if entry.loop == "sac" else "adm")
    assert entry.config_defaults() is not entry.config_defaults()  # a fresh copy each time


def test_cli_choices_are_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--algo", "nope"])
    assert "invalid choice: 'nope' (choose from " + ", ".join(repr(n) for n in ALGORITHMS) in capsys.readouterr().err


def test_unknown_algorithm_is_named():
    with pytest.raises(ConfigError, match="must be one of"):
        algorithm_entry("nope", "somewhere.yaml")
    with pytest.raises(ConfigError, match="must be one of"):
        resolve("nope")


def test_config_imports_no_algorithm():
    code = "import sys, offline_mbrl.config; print([m for m in sys.modules if m.startswith('offline_mbrl.algos')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
