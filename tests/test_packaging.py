"""The layers install under one name: `pickwise.api` imports from anywhere, `api` from nowhere."""
from __future__ import annotations

import os
import subprocess
import sys

LAYERS = ("registry", "predictor", "selector", "api")


def test_layers_import_as_pickwise_subpackages_and_not_as_top_level_modules(tmp_path):
    code = (
        "import importlib, importlib.util\n"
        f"for layer in {LAYERS!r}:\n"
        "    importlib.import_module('pickwise.' + layer)\n"
        "    assert importlib.util.find_spec(layer) is None, layer + ' imports as a top-level module'\n"
        "import pickwise.errors\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_every_domain_error_is_a_pickwise_error():
    from pickwise.api.cli.options import CliError
    from pickwise.api.errors import ModelNotFound, NotReady, RequestFieldError
    from pickwise.api.http.errors import HttpError
    from pickwise.errors import PickwiseError
    from pickwise.predictor.artifact import ArtifactError
    from pickwise.registry import RegistryError
    from pickwise.registry.probes.probe_set import ProbeSetError
    from pickwise.registry.probes.results import ResultsFormatError
    from pickwise.registry.yaml_source import YamlSyntaxError
    from pickwise.selector import InfeasibleSelection, PlanInfeasible, SelectorInputError
    from pickwise.selector.workload import ModelKeyError, WorkloadError

    for kind in (CliError, ModelNotFound, NotReady, RequestFieldError, HttpError, ArtifactError, RegistryError,
                 ProbeSetError, ResultsFormatError, YamlSyntaxError, InfeasibleSelection, PlanInfeasible,
                 SelectorInputError, ModelKeyError, WorkloadError):
        assert issubclass(kind, PickwiseError), kind
