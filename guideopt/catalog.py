"""Load and look up the bundled catalogs (GPUs, models, frameworks, calibration, GPU
architectures, Kubernetes labels), cross-checking the ids between them.

Catalog files are found in the installed package (``guideopt/catalogs``, put there by the
wheel build) or, in a source checkout, in the repository's ``catalogs/`` folder.
"""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from guideopt.errors import CatalogError, GuideoptError, GuideoptWarning, InvalidRequestError
from guideopt.model.calibration import Calibration
from guideopt.model.capability import Architecture, unknown_fallbacks
from guideopt.model.framework import Framework, parse_version, split_version_id
from guideopt.model.gpu import Gpu, LinkClass, PriceSet, PriceTier
from guideopt.model.hf_config import arch_from_hf_config
from guideopt.model.launch import KubernetesCatalog
from guideopt.model.limits import MAX_CONFIG_JSON_BYTES, MAX_CONSTRAINTS_FILE_BYTES
from guideopt.model.link import Links, NetworkLink
from guideopt.model.llm import ModelArch
from guideopt.model.model_ids import base_model_id, quantized_suffix_dtype
from guideopt.model.protocol import BenchmarkProtocol
from guideopt.model.unique_keys import DuplicateKeyError, loads_yaml
from guideopt.model.validation import booleans_as_text, validated
from guideopt.model.workload import LengthMix

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def catalog_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "catalogs", here.parent / "catalogs"):
        if (candidate / "gpus").is_dir():
            return candidate
    raise CatalogError("catalogs/ not found next to the guideopt package (reinstall guideopt)")


def _read_yaml(path: Path) -> Any:
    try:
        with path.open() as fh:
            return yaml.load(fh, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def _validation_message(path: Path | str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{path}: {loc}: {first['msg']}"


@dataclass(frozen=True)
class Catalog:
    gpus: dict[str, Gpu]
    models: dict[str, ModelArch]
    frameworks: dict[str, Framework]
    calibration: Calibration
    links: Links
    architectures: dict[str, Architecture]
    kubernetes: KubernetesCatalog
    protocols: dict[str, BenchmarkProtocol]

    @property
    def network_link(self) -> NetworkLink:
        return self.links.network

    def gpu(self, gpu_id: str) -> Gpu:
        return _lookup(self.gpus, gpu_id, "gpu", "guideopt catalog gpus")

    def protocol(self, protocol_id: str) -> BenchmarkProtocol:
        """A benchmark protocol by id; an unknown id names ``protocol`` and lists the known ones."""
        if protocol_id not in self.protocols:
            close = difflib.get_close_matches(protocol_id, list(self.protocols), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InvalidRequestError(f"unknown protocol {protocol_id!r} ({hint}one of {', '.join(self.protocols)})", "protocol")
        return self.protocols[protocol_id]

    def framework(self, framework_id: str) -> Framework:
        return _lookup(self.frameworks, framework_id, "framework", "guideopt catalog frameworks")

    def model(self, model_id: str) -> ModelArch:
        """A catalog model by Hugging Face id, or a model read from a local config.json path."""
        resolved = self.resolve_model(model_id)
        arch = self.models[resolved] if resolved in self.models else load_model_config(Path(resolved))
        quantized = quantized_suffix_dtype(model_id) if resolved != model_id else None
        if quantized:  # a quantized repository (X-FP8, nvidia/X-NVFP4) is its base architecture in that precision
            arch = arch.model_copy(update={"checkpoint_dtype": quantized})
        for caveat in arch.caveats:
            warnings.warn(GuideoptWarning(f"model {arch.id}: {caveat}"), stacklevel=2)
        return arch

    def resolve_model(self, name: str, base: Path | None = None, allow_paths: bool = True) -> str:
        """The one model-id resolver of every entry point (flags, constraints files, CSV rows, web).

        Returns the catalog id ``name`` stands for (exact, in any case, a fine-tuned
        variant's base model, a renamed repository) or, where paths are allowed, the
        absolute path of a local config.json (a relative path is read from ``base``, else
        the working folder). Anything else is a CatalogError with a "did you mean".
        """
        if name in self.models:
            return name
        if allow_paths:
            path = _config_path(name, base)
            if path is not None:
                load_model_config(path)  # a bad file is refused here, naming its field
                return str(path)
        found = base_model_id(name, self.models)
        if found is not None:
            return found
        close = difflib.get_close_matches(name, list(self.models), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        paths = ", or a path to a config.json" if allow_paths else "; choose a catalog id: local paths are not read here"
        raise CatalogError(f"model: unknown model {name!r} ({hint}see `guideopt catalog models`{paths})")


def _config_path(name: str, base: Path | None) -> Path | None:
    """The config.json a model name points to, or None when the name is not a path."""
    try:
        candidate = Path(name).expanduser()
        if not candidate.is_absolute() and base is not None:
            candidate = base / candidate
        looks_like_path = name.endswith(".json") or name.startswith((".", "/", "~")) or candidate.is_dir()
        if not looks_like_path:
            return None
        config = candidate / "config.json" if candidate.is_dir() else candidate
        if config.is_file():
            return config.resolve()
    except (OSError, ValueError, RuntimeError):  # a name too long, or with a NUL byte, for a path
        return None
    where = f" (relative paths are read from {base.resolve()})" if base is not None else ""
    raise CatalogError(f"model: file {name!r} does not exist{where} (give a catalog id or a config.json path)")


def _lookup(table: dict[str, Any], key: str, field: str, where: str) -> Any:
    if key in table:
        return table[key]
    folded = {k.lower(): k for k in table}
    if key.lower() in folded:
        return table[folded[key.lower()]]
    close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise CatalogError(f"{field}: unknown id {key!r} ({hint}see `{where}`)")


def load_model_config(path: Path) -> ModelArch:
    """A model read from a Hugging Face config.json (size-limited, UTF-8, one JSON object)."""
    try:
        if path.stat().st_size > MAX_CONFIG_JSON_BYTES:
            raise CatalogError(f"model: {path} is over {MAX_CONFIG_JSON_BYTES // 1024} KiB (give the model's config.json, a few KB)")
        text = path.read_bytes().decode("utf-8-sig")
        cfg = json.loads(text)
    except OSError as exc:
        raise CatalogError(f"model: cannot read {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CatalogError(f"model: {path} is not UTF-8 text (save the config.json as UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"model: {path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise CatalogError(f"model: {path}: nested too deeply (give a Hugging Face config.json)") from None
    if not isinstance(cfg, dict):
        raise CatalogError(f"model: {path} must hold a JSON object (a Hugging Face config.json)")
    name = cfg.get("_name_or_path")
    model_id = str(name) if isinstance(name, str) and name else str(path.parent.name or path.stem)
    return arch_from_hf_config(cfg, model_id, source=str(path))


def _load_folder(root: Path, folder: str, schema: Any) -> dict[str, Any]:
    """Every ``folder/<id>.yaml`` validated against ``schema``, keyed by its id (= its file name)."""
    out: dict[str, Any] = {}
    for path in sorted((root / folder).glob("*.yaml")):
        item = _load_file(path, schema)
        if item.id != path.stem:
            raise CatalogError(f"{path}: id {item.id!r} must match the file name {path.stem!r}")
        out[item.id] = item
    return out


def _load_protocols(root: Path) -> dict[str, BenchmarkProtocol]:
    """The benchmark protocols; a dataset protocol's length mix must be a bundled one."""
    protocols: dict[str, BenchmarkProtocol] = _load_folder(root, "protocols", BenchmarkProtocol)
    mixes = length_mix_ids(str(root))
    for p in protocols.values():
        if p.length_mix is not None and p.length_mix not in mixes:
            raise CatalogError(f"{root / 'protocols' / p.id}.yaml: length_mix: unknown mix {p.length_mix!r} (one of {', '.join(mixes)})")
    return protocols


def _load_models(root: Path) -> dict[str, ModelArch]:
    out: dict[str, ModelArch] = {}
    for path in sorted((root / "models").glob("*.yaml")):
        data = _read_yaml(path)
        if not isinstance(data, dict) or "id" not in data or "hf_config" not in data:
            raise CatalogError(f"{path}: needs 'id' and 'hf_config' keys")
        arch = arch_from_hf_config(data["hf_config"], data["id"], source=str(data.get("source", "")))
        if arch.checkpoint_dtype is None and quantized_suffix_dtype(arch.id):  # its quantization is in hf_quant_config.json
            arch = arch.model_copy(update={"checkpoint_dtype": quantized_suffix_dtype(arch.id)})
        out[arch.id] = arch
    return out


def _load_frameworks(root: Path) -> dict[str, Framework]:
    return {fw.id: fw for fw in (_load_file(p, Framework) for p in sorted((root / "frameworks").glob("*.yaml")))}


_Schema = TypeVar("_Schema", bound=BaseModel)


def _load_file(path: Path, schema: type[_Schema], missing_hint: str = "") -> _Schema:
    """One catalog file validated against its schema; a bad or missing file is one CatalogError."""
    try:
        return schema.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise CatalogError(_validation_message(path, exc)) from None
    except FileNotFoundError:
        raise CatalogError(f"{path} is missing{missing_hint}") from None


def _check_calibration_ids(root: Path, gpus: dict[str, Gpu], frameworks: dict[str, Framework], calibration: Calibration) -> None:
    """Every engine and every link class a GPU uses has its calibration entry (the cost model
    looks them up by id), so a gap is one catalog error at load, not a KeyError at predict time."""
    where = root / "calibration.yaml"
    refit = "add one, or refit with scripts/fit_calibration.py"
    for fw_id, fw in sorted(frameworks.items()):  # a version entry shares its engine family's fit (`engine:`)
        if fw.calibration_id not in calibration.frameworks:
            raise CatalogError(f"{where}: frameworks: no entry for engine {fw.calibration_id!r} of frameworks/{fw_id}.yaml ({refit})")
    # Every GPU can spill onto PCIe (a TP group wider than its fast link), so PCIe is always needed.
    needed = {LinkClass.PCIE.value: "every GPU's fallback link"}
    for gpu in sorted(gpus.values(), key=lambda g: g.id):
        needed.setdefault(gpu.link.value, f"gpus/{gpu.id}.yaml")
    for link, user in needed.items():
        if link not in calibration.links:
            raise CatalogError(f"{where}: links: no entry for link class {link!r}, used by {user} ({refit})")


def _load_architectures(root: Path) -> dict[str, Architecture]:
    path = root / "architectures.yaml"
    data = _read_yaml(path) if path.is_file() else None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: needs a mapping of architecture name -> {{vendor, target, source}}")
    try:
        return {str(k): Architecture.model_validate(v) for k, v in data.items()}
    except ValidationError as exc:
        raise CatalogError(_validation_message(path, exc)) from None


def _check_engine_versions(root: Path, frameworks: dict[str, Framework]) -> None:
    """Each entry is one engine version: its launch template names the same version."""
    for fw in frameworks.values():
        where = f"{root / 'frameworks' / fw.id}.yaml"
        if fw.launch.version != fw.version:
            raise CatalogError(
                f"{where}: launch.version {fw.launch.version!r} must equal version {fw.version!r} (one entry per engine version)"
            )
        engine, version = split_version_id(fw.id)
        if not version:
            continue
        base = frameworks.get(engine)
        if fw.calibration_id != engine or parse_version(fw.version)[: len(version)] != version:
            raise CatalogError(f"{where}: a version id {fw.id!r} needs engine: {engine} and a version {'.'.join(map(str, version))}.x")
        if base is not None and parse_version(fw.version) <= parse_version(base.version):
            raise CatalogError(f"{where}: version {fw.version} must be newer than the base entry {engine} ({base.version})")


def _check_capabilities(root: Path, gpus: dict[str, Gpu], frameworks: dict[str, Framework], archs: dict[str, Architecture]) -> None:
    """Every GPU's and engine's architecture is known, with the vendor it claims."""
    for gpu in gpus.values():
        known = archs.get(gpu.arch)
        if known is None or known.vendor is not gpu.vendor:
            raise CatalogError(f"{root / 'gpus' / gpu.id}.yaml: arch {gpu.arch!r} is not a {gpu.vendor.value} entry of architectures.yaml")
    if bad := unknown_fallbacks(archs):
        raise CatalogError(f"{root / 'architectures.yaml'}: {bad[0]}.calibrate_as: not a family of the same vendor in that file")
    for fw in frameworks.values():
        cap = fw.capabilities
        where = f"{root / 'frameworks' / fw.id}.yaml: capabilities"
        named = set(cap.architectures).union(*cap.weight_dtypes.values(), *cap.kv_dtypes.values())
        unknown = sorted(named - set(archs))
        if unknown:
            raise CatalogError(f"{where}: unknown architecture(s) {unknown} (see architectures.yaml)")
        beyond = sorted(set().union(*cap.weight_dtypes.values(), *cap.kv_dtypes.values()) - set(cap.architectures))
        if beyond:
            raise CatalogError(f"{where}: precisions listed on {beyond}, which are not in its architectures")
        vendors = {archs[a].vendor for a in cap.architectures}
        if vendors != set(cap.vendors):
            raise CatalogError(f"{where}.vendors: must be {sorted(v.value for v in vendors)} (the vendors of its architectures)")


def _load_kubernetes(root: Path, gpus: dict[str, Gpu]) -> KubernetesCatalog:
    path = root / "kubernetes.yaml"
    try:
        kube = KubernetesCatalog.model_validate(_read_yaml(path) if path.is_file() else None)
    except ValidationError as exc:
        raise CatalogError(_validation_message(path, exc)) from None
    missing = sorted(set(gpus) - set(kube.products))
    if missing:
        raise CatalogError(f"{path}: products: no node label value for {missing} (add one per catalog GPU)")
    return kube


@lru_cache(maxsize=4)
def load_catalog(root: str | None = None) -> Catalog:
    base = Path(root) if root else catalog_dir()
    gpus, frameworks = _load_folder(base, "gpus", Gpu), _load_frameworks(base)
    calibration = _load_file(base / "calibration.yaml", Calibration, " (run scripts/fit_calibration.py)")
    _check_calibration_ids(base, gpus, frameworks, calibration)
    archs = _load_architectures(base)
    _check_capabilities(base, gpus, frameworks, archs)
    calibration = calibration.with_family_fallbacks({k: a.calibrate_as for k, a in archs.items() if a.calibrate_as})
    _check_engine_versions(base, frameworks)
    return Catalog(
        gpus=gpus,
        models=_load_models(base),
        frameworks=frameworks,
        calibration=calibration,
        links=_load_file(base / "links.yaml", Links),
        architectures=archs,
        kubernetes=_load_kubernetes(base, gpus),
        protocols=_load_protocols(base),
    )


def price_set_names() -> list[str]:
    """The bundled price sets (``catalogs/prices/NAME.yaml``): one per provider, and tier-only sets."""
    return sorted(p.stem for p in (catalog_dir() / "prices").glob("*.yaml"))


def load_price_set(source: str, catalog: Catalog | None = None) -> PriceSet:
    """A bundled price set by name, or a YAML/JSON file of ``gpus: {id: price}``, optionally
    narrowed to one tier as ``SET:TIER`` (``aws:spot``); every id is checked."""
    name_or_path, tier = PriceTier.split_source(source)
    prices = _read_price_set(name_or_path, catalog or load_catalog())
    narrowed = prices.for_tier(tier or prices.tier)
    if narrowed is None:
        raise CatalogError(f"prices: {name_or_path!r} has no {tier} prices (it has {', '.join(prices.tier_names)}; see catalogs/prices/)")
    return narrowed


def _read_price_set(name_or_path: str, cat: Catalog) -> PriceSet:
    path = catalog_dir() / "prices" / f"{name_or_path}.yaml"
    if not path.is_file():
        path = Path(name_or_path).expanduser()
        looks_like_file = path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file()
        if not looks_like_file:
            raise CatalogError(f"prices: unknown price set {name_or_path!r} (one of {', '.join(price_set_names())}, or a YAML/JSON file)")
        try:
            if path.stat().st_size > MAX_CONSTRAINTS_FILE_BYTES:
                raise CatalogError(f"prices: {path} is over {MAX_CONSTRAINTS_FILE_BYTES // 1024} KiB (list GPU ids and prices only)")
            data = booleans_as_text(loads_yaml(path.read_bytes().decode("utf-8-sig")))  # true is not a price
        except OSError as exc:
            raise CatalogError(f"prices: cannot read {path} ({exc.strerror or exc})") from None
        except DuplicateKeyError as exc:
            raise CatalogError(f"prices: {exc.located(str(path))}") from None
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CatalogError(f"prices: {path} is not a UTF-8 YAML or JSON file ({str(exc).splitlines()[0]})") from None
    else:
        data = _read_yaml(path)
    bare = not isinstance(data, dict) or "gpus" not in data  # a bare {id: price} mapping
    try:
        prices = validated(PriceSet, {"gpus": data} if bare else data)
    except GuideoptError as exc:  # named as written: a bare mapping has no gpus key
        raise CatalogError(f"prices: {path}: {str(exc).removeprefix('gpus.') if bare else exc}") from None
    for gpu_id in [g for tier in (prices.gpus, *prices.tiers.values()) for g in tier]:
        try:
            cat.gpu(gpu_id)
        except CatalogError as exc:  # the price set's id, not a --gpu flag: say where it is
            raise CatalogError(f"prices: {path}: {str(exc).removeprefix('gpu: ')}") from None
    return prices


def length_mix_ids(root: str | None = None) -> list[str]:
    """Ids of the bundled length mixes (``catalogs/length_mixes/*.yaml``)."""
    base = Path(root) if root else catalog_dir()
    return sorted(p.stem for p in (base / "length_mixes").glob("*.yaml"))


@lru_cache(maxsize=16)
def load_length_mix(mix_id: str, root: str | None = None) -> LengthMix:
    """A named length mix, validated; an unknown id is a one-line error with the choices."""
    base = Path(root) if root else catalog_dir()
    ids = length_mix_ids(root)
    path = base / "length_mixes" / f"{mix_id}.yaml"
    if mix_id not in ids:  # an id, never a path: nothing outside length_mixes/ is opened
        close = difflib.get_close_matches(mix_id, ids, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise CatalogError(f"lengths: unknown length mix or file {mix_id!r} ({hint}mixes: {', '.join(ids)}; or give a CSV/JSONL file)")
    mix = _load_file(path, LengthMix)
    if mix.id != path.stem:
        raise CatalogError(f"{path}: id {mix.id!r} must match the file name {path.stem!r}")
    return mix
