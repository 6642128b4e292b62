"""`pickwise models list|show|add|remove --server URL`: the service's registry, printed as the local path
prints a registry; writes with the admin token from $PICKWISE_ADMIN_TOKEN. Real servers on loopback."""
from __future__ import annotations

import socket

import pytest
import yaml

from pickwise.api.cli.main import main
from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from pickwise.registry import load_registry
from tests.api_support import TOKEN, TRAINED, UNTRAINED, copy_models, live_server
from tests.registry_samples import csv_text, model, scores, write

pytestmark = pytest.mark.usefixtures("no_server_env")


@pytest.fixture
def no_server_env(monkeypatch):
    monkeypatch.delenv("PICKWISE_SERVER", raising=False)
    monkeypatch.delenv("PICKWISE_ADMIN_TOKEN", raising=False)


@pytest.fixture
def served(tmp_path, tiny_predictor):
    """(registry dir, URL) of a service on a copy of a few shipped models, one disabled, writes with TOKEN."""
    registry = copy_models(tmp_path / "registry")
    write(registry, "off.yaml", model("off-model", aliases=["off-alias"], enabled=False))
    app = create_app(registry, predictor=tiny_predictor, settings=ServiceSettings(admin_token=TOKEN))
    with live_server(app) as url:
        yield registry, url


@pytest.fixture
def layered(tmp_path, monkeypatch, tiny_predictor):
    """URL of a service on the user's registry (PICKWISE_HOME) over the shipped one, as `make serve` runs."""
    home = tmp_path / "home"
    monkeypatch.setenv("PICKWISE_HOME", str(home))
    (home / "registry").mkdir(parents=True)
    write(home / "registry", "team.yaml", model("team-coder", probe={"similar_to": TRAINED[0]}))
    app = create_app(None, predictor=tiny_predictor, settings=ServiceSettings(admin_token=TOKEN))
    with live_server(app) as url:
        yield url


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _local_and_remote(capsys, registry_option: list[str], url: str, *argv):
    return _run(capsys, *argv, *registry_option), _run(capsys, *argv, "--server", url)


def test_list_through_the_server_prints_the_local_table_and_json(served, capsys):
    registry, url = served
    for extra in ([], ["--enabled-only"], ["--json"], ["--json", "--enabled-only"]):
        local, remote = _local_and_remote(capsys, ["--registry", str(registry)], url, "models", "list", *extra)
        assert remote[0] == local[0] == 0, remote[2]
        if "--json" in extra:
            assert remote[1] == local[1]
        else:  # the same table; the last line says where the registry is
            assert remote[1].splitlines()[:-1] == local[1].splitlines()[:-1]
            assert url in remote[1].splitlines()[-1]
            assert remote[1].splitlines()[-1].split(",")[0] == local[1].splitlines()[-1].split(",")[0]  # N models
    assert "off-model" in _run(capsys, "models", "list", "--server", url)[1]


def test_list_of_a_layered_server_has_the_source_column(layered, capsys):
    local, remote = _local_and_remote(capsys, [], layered, "models", "list")
    assert remote[0] == 0 and remote[1].splitlines()[0].split()[-1] == "SOURCE"
    assert remote[1].splitlines()[:-1] == local[1].splitlines()[:-1]
    local, remote = _local_and_remote(capsys, [], layered, "models", "list", "--json")
    assert remote[1] == local[1] and '"source": "user"' in remote[1] and '"source": "shipped"' in remote[1]


def test_show_through_the_server_prints_the_local_yaml(served, capsys):
    registry, url = served
    for name in (*TRAINED, UNTRAINED, "off-alias"):
        local, remote = _local_and_remote(capsys, ["--registry", str(registry)], url, "models", "show", name)
        assert remote[0] == local[0] == 0, remote[2]
        header, _, body = remote[1].partition("\n")
        assert body == local[1].partition("\n")[2]
        assert header.startswith("# ") and url in header
        assert ("off.yaml" if name == "off-alias" else "models.yaml") in header
        assert yaml.safe_load(remote[1])["name"] == ("off-model" if name == "off-alias" else name)
    local, remote = _local_and_remote(capsys, ["--registry", str(registry)], url, "models", "show", "ghost")
    assert remote[0] == local[0] == 2 and remote[1] == ""
    assert f"the pickwise server at {url} answered HTTP 404" in remote[2] and "ghost" in remote[2]


def test_add_sends_probe_results_inline_and_writes_what_the_local_path_writes(served, capsys, monkeypatch, tmp_path):
    registry, url = served
    mirror = copy_models(tmp_path / "mirror")  # the same registry, added to locally
    write(mirror, "off.yaml", model("off-model", aliases=["off-alias"], enabled=False))
    (tmp_path / "src" / "probes").mkdir(parents=True)
    (tmp_path / "src" / "probes" / "p.csv").write_text(csv_text(scores(60)))
    new = write(tmp_path / "src", "p.yaml", model("vendor/probed", probe={"results": "probes/p.csv"}))
    monkeypatch.chdir(tmp_path)  # neither the registry's nor the YAML file's directory
    monkeypatch.setenv("PICKWISE_ADMIN_TOKEN", TOKEN)
    local, remote = _local_and_remote(capsys, ["--registry", str(mirror)], url, "models", "add", str(new))
    assert remote[0] == local[0] == 0, remote[2]
    assert remote[1].startswith("added model 'vendor/probed' in vendor_probed.yaml") and url in remote[1]
    assert (registry / "vendor_probed.yaml").read_text() == (mirror / "vendor_probed.yaml").read_text()
    assert load_registry(registry).probe_scores("vendor/probed") == scores(60)

    replacing = write(tmp_path, "again.yaml", model("vendor/probed", provider="newco"))
    local, remote = _local_and_remote(capsys, ["--registry", str(mirror)], url, "models", "add", str(replacing))
    assert remote[0] == local[0] == 2 and url in remote[2] and "--replace" in remote[2]
    local, remote = _local_and_remote(capsys, ["--registry", str(mirror)], url, "models", "add", str(replacing),
                                      "--replace")
    assert remote[0] == local[0] == 0 and remote[1].startswith("replaced model 'vendor/probed'"), remote[2]
    assert load_registry(registry).get("vendor/probed").provider == "newco"
    fresh = write(tmp_path, "fresh.yaml", model("fresh"))  # --replace of a model not there yet adds it
    code, out, err = _run(capsys, "models", "add", str(fresh), "--replace", "--server", url)
    assert code == 0 and out.startswith("added model 'fresh'"), err


def test_add_of_an_invalid_entry_is_refused_here_as_locally(served, capsys, tmp_path):
    registry, url = served
    before = sorted(p.name for p in registry.iterdir())
    bad = write(tmp_path, "bad.yaml", model("b", context_window=-3))
    missing = tmp_path / "src" / "p.yaml"
    missing.parent.mkdir()
    write(missing.parent, "p.yaml", model("p", probe={"results": "nowhere.csv"}))
    for path in (bad, missing, tmp_path / "absent.yaml"):
        local, remote = _local_and_remote(capsys, ["--registry", str(registry)], url, "models", "add", str(path))
        assert remote == local and local[0] == 2, path
    assert sorted(p.name for p in registry.iterdir()) == before


def test_what_the_servers_registry_refuses_is_printed_as_locally_naming_the_users_file(served, capsys, monkeypatch,
                                                                                       tmp_path):
    registry, url = served
    monkeypatch.setenv("PICKWISE_ADMIN_TOKEN", TOKEN)
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "p.csv").write_text(csv_text(scores(60)))
    cases = [write(tmp_path, "taken.yaml", model("fresh", aliases=["x1", "off-alias"])),  # line of the alias
             write(tmp_path, "similar.yaml", model("s", probe={"similar_to": "nope"})),
             write(tmp_path, "inlined.yaml", model("off-model", probe={"results": "probes/p.csv"}))]  # no line
    for path in cases:
        local, remote = _local_and_remote(capsys, ["--registry", str(registry)], url, "models", "add", str(path))
        assert remote[0] == local[0] == 2 and remote[1] == local[1] == "", path
        first, _, rest = remote[2].partition("\n")
        expected = local[2].partition("\n")[2]
        if path.name == "inlined.yaml":  # the text sent is not the file's (results inline): its lines are not
            expected = expected.replace(f"{path}:1:", f"{path}:")
        assert rest == expected and str(path) in rest and "<new model>" not in rest, path
        assert first == f"pickwise models add: error: not added: the pickwise server at {url} answered HTTP " \
                        f"{422 if path.name == 'similar.yaml' else 409}:", path


def test_writes_without_the_admin_token_are_refused_naming_the_variable(served, capsys, monkeypatch, tmp_path):
    registry, url = served
    new = write(tmp_path, "new.yaml", model("new"))
    for token, status in ((None, 401), ("wrong", 403)):
        if token:
            monkeypatch.setenv("PICKWISE_ADMIN_TOKEN", token)
        for argv in (["add", str(new)], ["remove", UNTRAINED]):
            code, out, err = _run(capsys, "models", *argv, "--server", url)
            assert code == 2 and out == "" and f"the pickwise server at {url} answered HTTP {status}" in err
            assert "PICKWISE_ADMIN_TOKEN" in err
    assert "new" not in load_registry(registry) and UNTRAINED in load_registry(registry)


def test_remove_through_the_server(served, capsys, monkeypatch):
    registry, url = served
    monkeypatch.setenv("PICKWISE_ADMIN_TOKEN", TOKEN)
    code, out, err = _run(capsys, "models", "remove", "off-alias", "--server", url)
    assert code == 0 and out.startswith("removed model 'off-model'") and url in out, err
    assert "off-model" not in load_registry(registry)
    code, out, err = _run(capsys, "models", "remove", "ghost", "--server", url)
    assert code == 2 and f"the pickwise server at {url} answered HTTP 404" in err and "ghost" in err


def test_pickwise_server_is_the_default_and_validate_stays_local(served, capsys, monkeypatch, tmp_path):
    registry, url = served
    monkeypatch.setenv("PICKWISE_SERVER", url)
    assert url in _run(capsys, "models", "list")[1]  # the server's registry, not the local one
    assert "off-model" in _run(capsys, "models", "show", "off-model")[1]
    code, out, _ = _run(capsys, "models", "list", "--server", "")  # '' runs locally
    assert code == 0 and "off-model" not in out and url not in out
    code, out, _ = _run(capsys, "models", "validate", str(registry))  # a directory here: never the server's
    assert code == 0 and out.startswith("OK: 5 models")


def test_registry_and_server_together_are_refused(served, capsys, monkeypatch, tmp_path):
    """`--registry DIR` names a registry here: with $PICKWISE_SERVER set, a write must not go to the server."""
    registry, url = served
    monkeypatch.setenv("PICKWISE_SERVER", url)
    new = write(tmp_path, "new.yaml", model("new"))
    code, out, err = _run(capsys, "models", "add", str(new), "--registry", str(tmp_path / "mine"))
    assert code == 2 and out == "" and "--registry" in err and "--server ''" in err
    assert "new" not in load_registry(registry) and not (tmp_path / "mine").exists()


def test_a_server_that_is_down_is_named(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    for argv in (["list"], ["show", "x"], ["remove", "x"], ["add", str(write(tmp_path, "n.yaml", model("n")))]):
        code, out, err = _run(capsys, "models", *argv, "--server", down)
        assert code == 2 and out == "" and f"cannot reach the pickwise server at {down}" in err, argv


@pytest.mark.parametrize("argv", [["select", "hi"], ["predict", "--input", "x.jsonl"], ["plan", "--input", "x.jsonl",
                                                                                          "--budget", "1"]])
@pytest.mark.parametrize("option, what", [("--registry", "a registry"), ("--artifact", "a predictor artifact")])
def test_every_remote_command_refuses_a_registry_or_artifact_here(capsys, monkeypatch, tmp_path, argv, option, what):
    # the server answers from its own registry and predictor: a local one named beside it would be ignored
    monkeypatch.setenv("PICKWISE_SERVER", "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"id": "a", "prompt": "hi"}\n')
    code, out, err = _run(capsys, *argv, option, str(tmp_path / "mine"))
    assert code == 2 and out == "" and f"{option} {tmp_path / 'mine'} names {what} here" in err
    assert "--server ''" in err
