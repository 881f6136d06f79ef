"""Settings: precedence cli > env > file > default, origins, clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from saem.errors import ConfigError
from saem.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_without_any_source(tmp_path: Path) -> None:
    s = Settings.load({"data_dir": tmp_path}, environ={})
    assert s.chat_model == "packaged:smollm2"
    assert s.n_threads == 1
    assert s.allow_downloads is False
    assert s.origin("n_threads") == "default"
    assert s.origin("data_dir") == "cli"
    assert s.config_file is None


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "saem.toml").write_text("n_threads = 3\ntemperature = 0.7\nseed = 9\n", encoding="utf-8")
    env = {"SAEM_DATA_DIR": str(tmp_path), "SAEM_TEMPERATURE": "0.4", "SAEM_SEED": "5"}
    s = Settings.load({"seed": 1}, environ=env)
    assert (s.n_threads, s.origin("n_threads")) == (3, "file")
    assert (s.temperature, s.origin("temperature")) == (0.4, "env")
    assert (s.seed, s.origin("seed")) == (1, "cli")
    assert s.config_file == tmp_path / "saem.toml"


def test_explicit_config_file_and_saem_table(tmp_path: Path) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text('[saem]\nchat_model = "/models/x.gguf"\n', encoding="utf-8")
    s = Settings.load(config_file=cfg, environ={})
    assert s.chat_model == "/models/x.gguf"
    assert s.origin("chat_model") == "file"


def test_env_config_variable_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_tokens = 77\n", encoding="utf-8")
    s = Settings.load(environ={"SAEM_CONFIG": str(cfg)})
    assert s.max_tokens == 77


def test_none_overrides_are_ignored(tmp_path: Path) -> None:
    s = Settings.load({"n_ctx": None, "data_dir": tmp_path}, environ={"SAEM_N_CTX": "2048"})
    assert s.n_ctx == 2048 and s.origin("n_ctx") == "env"


@pytest.mark.parametrize(
    ("source", "key"),
    [("cli", "n_ctx"), ("env", "temperature"), ("file", "top_p")],
)
def test_invalid_value_names_key_and_origin(tmp_path: Path, source: str, key: str) -> None:
    overrides: dict[str, object] = {"data_dir": tmp_path}
    env: dict[str, str] = {}
    if source == "cli":
        overrides[key] = 10
    elif source == "env":
        env["SAEM_TEMPERATURE"] = "hot"
    else:
        (tmp_path / "saem.toml").write_text("top_p = 7\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Settings.load(overrides, environ=env)
    assert info.value.key == key
    assert key in str(info.value) and f"from {source}" in str(info.value)


def test_unknown_keys_are_refused_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_thread") as info:
        Settings.load({"n_thread": 2}, environ={})
    assert info.value.key == "n_thread"
    with pytest.raises(ConfigError, match="colour"):
        Settings.load({"data_dir": tmp_path}, environ={"SAEM_COLOUR": "red"})
    (tmp_path / "saem.toml").write_text("modle = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="modle"):
        Settings.load({"data_dir": tmp_path}, environ={})


def test_broken_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("n_ctx = = 3", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.load(config_file=bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        Settings.load(config_file=tmp_path / "nope.toml", environ={})


def test_blank_model_setting_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({"embed_model": "   "}, environ={})
    assert info.value.key == "embed_model"


def test_settings_are_frozen_and_copy_with_overrides(tmp_path: Path) -> None:
    s = Settings.load({"data_dir": tmp_path}, environ={})
    with pytest.raises(ValidationError, match="frozen"):
        s.n_ctx = 10  # type: ignore[misc]
    t = s.with_overrides(temperature=0.0)
    assert t.temperature == 0.0 and s.temperature == 0.2
    assert t.origin("temperature") == "cli" and t.origin("data_dir") == "cli"
    with pytest.raises(ConfigError):
        s.with_overrides(temperature=-1)


def test_json_round_trip(tmp_path: Path) -> None:
    s = Settings.load({"data_dir": tmp_path, "n_ctx": 1024}, environ={})
    data = s.to_json_dict()
    assert data["data_dir"] == str(tmp_path)
    again = Settings(**data)
    assert again.model_dump() == s.model_dump()


def test_fusion_settings_reach_the_searchers_config(tmp_path: Path) -> None:
    from saem.retrieval.hybrid import HybridConfig

    (tmp_path / "saem.toml").write_text('fusion = "rrf"\ncross_lingual_lexical_weight = 0.5\n', encoding="utf-8")
    s = Settings.load({"data_dir": tmp_path}, environ={})
    config = HybridConfig.from_settings(s)
    assert (config.fusion, config.cross_lingual_lexical_weight) == ("rrf", 0.5)
    assert HybridConfig.from_settings(Settings.load({"data_dir": tmp_path / "x"}, environ={})).fusion == "relative"
    with pytest.raises(ConfigError, match="fusion"):
        Settings.load({"data_dir": tmp_path}, environ={"SAEM_FUSION": "max"})


def test_auto_answer_mode_is_decided_in_one_place() -> None:
    from saem.settings import effective_answer_mode

    assert Settings.load({}).effective_answer_mode == "extractive"  # the packaged 135M model
    assert Settings.load({"chat_model": "/models/qwen.gguf"}).effective_answer_mode == "generate"
    assert Settings.load({"answer_mode": "hybrid"}).effective_answer_mode == "hybrid"
    assert effective_answer_mode("auto", "packaged:smollm2") == "extractive"
