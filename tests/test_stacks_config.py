"""Stack config is validated up front: every bad key named in one error, before any resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctfleet.core.errors import InputErrors
from ctfleet.stacks.config import validate_config
from ctfleet.stacks.generate import config_line_of, default_config, read_stack_file
from ctfleet.stacks.program import load_inputs, provider_args

SRC = "infra/stacks/Pulumi.sdr-oriental.yaml"


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


def good_sdr() -> dict:
    return {
        "ctfleet:tier": "sdr",
        "ctfleet:unit": "02",
        "ctfleet:kubernetes": {"context": "sdr-oriental"},
        "ctfleet:images": {"collector": "localhost:5000/ctfleet/collector:0.1.0",
                           "prometheus": "quay.io/prometheus/prometheus:v3.5.0",
                           "aptCacherNg": "localhost:5000/ctfleet/apt-cacher-ng:3.7.4"},
        "ctfleet:operatorGroups": ["sdr-oriental:operators", "{namespace}:admins"],
        "ctfleet:siteCidrs": ["10.2.0.0/16"],
    }


def errors(inputs, raw: dict, stack: str = "sdr-oriental") -> str:
    with pytest.raises(InputErrors) as exc:
        validate_config(raw, stack, inputs.registry, f"infra/stacks/Pulumi.{stack}.yaml")
    return str(exc.value)


def test_generated_configs_are_valid(inputs):
    for name, ref in inputs.stacks.items():
        cfg = validate_config(default_config(ref), name, inputs.registry, f"Pulumi.{name}.yaml")
        assert cfg.tier == ref.tier and cfg.unit == ref.unit


def test_every_bad_key_is_named_in_one_error(inputs):
    raw = good_sdr() | {
        "ctfleet:colour": "blue",  # unknown
        "ctfleet:kubernetes": {"context": "x", "renderYamlToDirectory": "out"},
        "ctfleet:images": {"prometheus": "quay.io/prometheus/prometheus:latest", "aptCacherNg": "a:1", "grafana": "g:1"},
        "ctfleet:operatorGroups": ["{ns}-ops"],
        "ctfleet:siteCidrs": ["10.2.0.1/16"],
        "kubernetes:context": "not ours, ignored",
    }
    assert errors(inputs, raw) == "\n".join([
        "7 problems in the stack config, no resource declared:",
        f"  {SRC}: ctfleet:colour: unknown key (valid: one of ctfleet:federate, ctfleet:federationCidrs, ctfleet:images, "
        "ctfleet:ingressNamespace, ctfleet:kubernetes, ctfleet:operatorGroups, ctfleet:prometheusRetention, ctfleet:siteCidrs, "
        "ctfleet:storageClass, ctfleet:tier, ctfleet:unit)",
        f"  {SRC}: ctfleet:images.grafana: unknown key (valid: one of aptCacherNg, collector, prometheus)",
        f"  {SRC}: ctfleet:kubernetes: renderYamlToDirectory cannot be combined with context or kubeconfig: one provider either "
        "renders manifests or deploys them (valid: either {context: NAME[, kubeconfig: PATH]} or {renderYamlToDirectory: DIR})",
        f"  {SRC}: ctfleet:images.collector: required key is missing for tier sdr (valid: an image reference with an explicit "
        "tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
        f"  {SRC}: ctfleet:images.prometheus: 'quay.io/prometheus/prometheus:latest' is not an image reference with an explicit "
        "tag (valid: an image reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
        f"  {SRC}: ctfleet:operatorGroups[0]: unknown placeholder(s) {{ns}} in '{{ns}}-ops' (valid: one of {{namespace}}, {{stack}})",
        f"  {SRC}: ctfleet:siteCidrs[0]: '10.2.0.1/16' is not a network address (10.2.0.1/16 has host bits set) "
        "(valid: a CIDR such as 10.4.0.0/16)",
    ])


def test_exact_error_for_missing_and_mistyped_keys(inputs):
    raw = {"ctfleet:tier": "regional", "ctfleet:operatorGroups": "ops"}
    assert errors(inputs, raw) == "\n".join([
        "3 problems in the stack config, no resource declared:",
        f"  {SRC}: ctfleet:tier: 'regional' is not a tier (valid: one of national, sdr, eci, sdl)",
        f"  {SRC}: ctfleet:kubernetes: required key is missing (valid: either {{context: NAME[, kubeconfig: PATH]}} or "
        "{renderYamlToDirectory: DIR})",
        f"  {SRC}: ctfleet:operatorGroups: Input should be a valid list, got 'ops' (valid: a list of one or more group names)",
    ])


def test_config_of_another_unit_is_refused(inputs):
    raw = good_sdr() | {"ctfleet:unit": "04"}
    assert errors(inputs, raw) == (
        "1 problem in the stack config, no resource declared:\n"
        f"  {SRC}: ctfleet:unit: this config provisions stack 'sdr-rabat-sale-kenitra', but the stack being run is "
        "'sdr-oriental' (valid: select stack sdr-rabat-sale-kenitra (pulumi stack select sdr-rabat-sale-kenitra), "
        "or regenerate with `ctfleet stacks generate`)")


def test_unknown_units_name_the_valid_ones(inputs):
    raw = good_sdr() | {"ctfleet:unit": "13"}
    text = errors(inputs, raw)
    assert "ctfleet:unit: '13' is not a region code of the registry (valid: one of 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12)" in text
    raw = {"ctfleet:tier": "sdl", "ctfleet:unit": "04.441.01.03", "ctfleet:kubernetes": {"context": "x"},
           "ctfleet:operatorGroups": ["g"]}
    text = errors(inputs, raw, "sdl-sale")
    assert ("ctfleet:unit: '04.441.01.03' is not a commune code with an SDL of the registry (valid: one of 01.511.01.0, "
            "03.231.01.0, 04.421.01.0, 04.441.01.0, 06.141.01.0, 07.351.01.0)") in text


def test_national_checks(inputs):
    raw = {"ctfleet:tier": "national", "ctfleet:unit": "04", "ctfleet:kubernetes": {"renderYamlToDirectory": "out"},
           "ctfleet:operatorGroups": ["dgct"], "ctfleet:federate": {"rabat": "10.4.0.1:9090", "oriental": "no port"}}
    assert errors(inputs, raw, "national") == "\n".join([
        "4 problems in the stack config, no resource declared:",
        "  infra/stacks/Pulumi.national.yaml: ctfleet:unit: the national stack provisions no region, grouping or commune; remove this key",
        "  infra/stacks/Pulumi.national.yaml: ctfleet:images.prometheus: required key is missing for tier national (valid: an "
        "image reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
        "  infra/stacks/Pulumi.national.yaml: ctfleet:federate.rabat: 'rabat' is not a region slug (valid: one of beni-mellal-khenifra, "
        "casablanca-settat, dakhla-oued-ed-dahab, draa-tafilalet, fes-meknes, guelmim-oued-noun, laayoune-sakia-el-hamra, "
        "marrakech-safi, oriental, rabat-sale-kenitra, souss-massa, tanger-tetouan-al-hoceima)",
        "  infra/stacks/Pulumi.national.yaml: ctfleet:federate.oriental: 'no port' is not host:port (valid: e.g. 10.4.255.10:9090 "
        "or prometheus.sdr.example.ma:9090)",
    ])


def test_errors_from_a_file_carry_its_line_numbers(inputs, tmp_path: Path):
    path = tmp_path / "Pulumi.sdr-oriental.yaml"
    path.write_text(
        "config:\n"
        "  ctfleet:tier: sdr\n"
        "  ctfleet:unit: '02'\n"
        "  ctfleet:kubernetes:\n"
        "    context: sdr-oriental\n"
        "  ctfleet:images:\n"
        "    collector: localhost:5000/ctfleet/collector\n"
        "    prometheus: quay.io/prometheus/prometheus:v3.5.0\n"
        "    aptCacherNg: localhost:5000/ctfleet/apt-cacher-ng:3.7.4\n"
        "  ctfleet:operatorGroups: [ops]\n"
        "  ctfleet:siteCidr: [10.2.0.0/16]\n", encoding="utf-8")
    raw, doc = read_stack_file(path, SRC)
    with pytest.raises(InputErrors) as exc:
        validate_config(raw, "sdr-oriental", inputs.registry, SRC, config_line_of(doc))
    assert str(exc.value).splitlines()[1:] == [
        f"  {SRC}:11: ctfleet:siteCidr: unknown key (valid: one of ctfleet:federate, ctfleet:federationCidrs, ctfleet:images, "
        "ctfleet:ingressNamespace, ctfleet:kubernetes, ctfleet:operatorGroups, ctfleet:prometheusRetention, ctfleet:siteCidrs, "
        "ctfleet:storageClass, ctfleet:tier, ctfleet:unit)",
        f"  {SRC}:7: ctfleet:images.collector: 'localhost:5000/ctfleet/collector' is not an image reference with an explicit tag "
        "(valid: an image reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
    ]


def test_provider_args(inputs):
    cfg = validate_config(good_sdr(), "sdr-oriental", inputs.registry, SRC)
    assert provider_args(cfg) == {"context": "sdr-oriental"}
    raw = good_sdr() | {"ctfleet:kubernetes": {"renderYamlToDirectory": "rendered/sdr-oriental"}}
    cfg = validate_config(raw, "sdr-oriental", inputs.registry, SRC)
    assert provider_args(cfg) == {"render_yaml_to_directory": "rendered/sdr-oriental"}
    raw = good_sdr() | {"ctfleet:kubernetes": {"context": "c", "kubeconfig": "/etc/sdr/kubeconfig"}}
    assert provider_args(validate_config(raw, "sdr-oriental", inputs.registry, SRC)) == {"context": "c", "kubeconfig": "/etc/sdr/kubeconfig"}


def test_pulumi_passes_objects_as_json_text(inputs):
    from ctfleet.lab.pulumi_mocks import engine_config

    cfg = validate_config(engine_config(good_sdr()), "sdr-oriental", inputs.registry, SRC)
    assert cfg.images.collector == "localhost:5000/ctfleet/collector:0.1.0"
    assert cfg.siteCidrs == ["10.2.0.0/16"]
