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
        "ctfleet:images": {"collector": "registry.ctfleet.ma/ctfleet/collector:0.1.0",
                           "prometheus": "quay.io/prometheus/prometheus:v3.5.0",
                           "aptCacherNg": "registry.ctfleet.ma/ctfleet/apt-cacher-ng:3.7.4"},
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
        "ctfleet:images": {"prometheus": "quay.io/prometheus/prometheus:latest", "aptCacherNg": "a:1", "kibana": "k:1"},
        "ctfleet:operatorGroups": ["{ns}-ops"],
        "ctfleet:siteCidrs": ["10.2.0.1/16"],
        "kubernetes:context": "not ours, ignored",
    }
    assert errors(inputs, raw) == "\n".join([
        "7 problems in the stack config, no resource declared:",
        f"  {SRC}: ctfleet:colour: unknown key (valid: one of ctfleet:allowDestructiveChanges, ctfleet:dataPath, ctfleet:demo, ctfleet:development, "
        "ctfleet:expose, ctfleet:federationCidrs, ctfleet:images, ctfleet:ingressNamespace, ctfleet:kubeconfig, ctfleet:kubernetes, ctfleet:operatorGroups, ctfleet:platformCidrs, ctfleet:profile, ctfleet:prometheusRetention, ctfleet:siteCidrs, "
        "ctfleet:storageClass, ctfleet:tier, ctfleet:unit)",
        f"  {SRC}: ctfleet:images.kibana: unknown key (valid: one of alertmanager, aptCacherNg, collector, grafana, postgres, prometheus)",
        f"  {SRC}: ctfleet:kubernetes: renderYamlToDirectory cannot be combined with a context or a kubeconfig: one provider either "
        "renders manifests or deploys them (valid: either {context: NAME[, clusterIdentifier: ID]} with the secret ctfleet:kubeconfig, "
        "or {renderYamlToDirectory: DIR})",
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
        f"  {SRC}: ctfleet:kubernetes: required key is missing (valid: either {{context: NAME[, clusterIdentifier: ID]}} with the secret "
        "ctfleet:kubeconfig, or "
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
           "ctfleet:operatorGroups": ["dgct"]}
    assert errors(inputs, raw, "national") == "\n".join([
        "2 problems in the stack config, no resource declared:",
        "  infra/stacks/Pulumi.national.yaml: ctfleet:unit: the national stack provisions no region, grouping or commune; remove this key",
        "  infra/stacks/Pulumi.national.yaml: ctfleet:images.prometheus: required key is missing for tier national (valid: an "
        "image reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
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
        "    collector: registry.ctfleet.ma/ctfleet/collector\n"
        "    prometheus: quay.io/prometheus/prometheus:v3.5.0\n"
        "    aptCacherNg: registry.ctfleet.ma/ctfleet/apt-cacher-ng:3.7.4\n"
        "  ctfleet:operatorGroups: [ops]\n"
        "  ctfleet:siteCidr: [10.2.0.0/16]\n", encoding="utf-8")
    raw, doc = read_stack_file(path, SRC)
    with pytest.raises(InputErrors) as exc:
        validate_config(raw, "sdr-oriental", inputs.registry, SRC, config_line_of(doc))
    assert str(exc.value).splitlines()[1:] == [
        f"  {SRC}:11: ctfleet:siteCidr: unknown key (valid: one of ctfleet:allowDestructiveChanges, ctfleet:dataPath, ctfleet:demo, ctfleet:development, "
        "ctfleet:expose, ctfleet:federationCidrs, ctfleet:images, ctfleet:ingressNamespace, ctfleet:kubeconfig, ctfleet:kubernetes, ctfleet:operatorGroups, ctfleet:platformCidrs, ctfleet:profile, ctfleet:prometheusRetention, ctfleet:siteCidrs, "
        "ctfleet:storageClass, ctfleet:tier, ctfleet:unit)",
        f"  {SRC}:7: ctfleet:images.collector: 'registry.ctfleet.ma/ctfleet/collector' is not an image reference with an explicit tag "
        "(valid: an image reference with an explicit tag (not latest), e.g. quay.io/prometheus/prometheus:v3.5.0)",
    ]


def test_provider_args(inputs):
    from ctfleet.stacks.program import PROVIDER_DEFAULTS

    cfg = validate_config(good_sdr(), "sdr-oriental", inputs.registry, SRC)
    assert provider_args(cfg, "sdr-oriental", "SECRET") == PROVIDER_DEFAULTS | {
        "context": "sdr-oriental", "kubeconfig": "SECRET", "cluster_identifier": "sdr-oriental"}
    raw = good_sdr() | {"ctfleet:kubernetes": {"renderYamlToDirectory": "rendered/sdr-oriental", "clusterIdentifier": "rsk-1"}}
    cfg = validate_config(raw, "sdr-oriental", inputs.registry, SRC)
    assert provider_args(cfg, "sdr-oriental") == PROVIDER_DEFAULTS | {
        "render_yaml_to_directory": "rendered/sdr-oriental", "kubeconfig": "", "cluster_identifier": "rsk-1"}


def test_the_kubeconfig_is_only_a_secret(inputs):
    """Encrypted in the file ({secure: ...}) it is accepted without decrypting; in plain text, or as a path, it is refused."""
    cfg = validate_config(good_sdr() | {"ctfleet:kubeconfig": {"secure": "v1:AAAABBBB"}}, "sdr-oriental", inputs.registry, SRC)
    assert cfg.kubeconfig is not None and cfg.kubeconfig.value is None and str(cfg.kubeconfig) == "<secret, encrypted>"
    text = errors(inputs, good_sdr() | {"ctfleet:kubeconfig": "apiVersion: v1\nusers: [{user: {token: hunter2}}]",
                                        "ctfleet:siteCidrs": {"secure": "v1:CCCC"},
                                        "ctfleet:kubernetes": {"context": "sdr-oriental", "kubeconfig": "/home/me/.kube/config"}})
    assert text.splitlines() == [
        "3 problems in the stack config, no resource declared:",
        f"  {SRC}: ctfleet:siteCidrs: is a secret, but only ctfleet:kubeconfig is read as a secret (valid: a plain value "
        "(pulumi config set, without --secret))",
        f"  {SRC}: ctfleet:kubeconfig: is stored in plain text in the stack config: a kubeconfig holds the cluster's credentials "
        "(valid: the kubeconfig's contents as a stack secret: pulumi config set --secret ctfleet:kubeconfig < sdr-kubeconfig.yaml)",
        f"  {SRC}: ctfleet:kubernetes.kubeconfig: the kubeconfig is no longer a path or text here: it is the stack's secret "
        "ctfleet:kubeconfig, so every teammate deploys to the same cluster (valid: the kubeconfig's contents as a stack secret: "
        "pulumi config set --secret ctfleet:kubeconfig < sdr-kubeconfig.yaml)",
    ]
    assert "hunter2" not in text and "CCCC" not in text
    # decrypted by the engine and marked secret: checked against the context, never quoted
    bad = "apiVersion: v1\ncontexts: [{name: other, context: {cluster: c}}]\nclusters: [{name: c}]\nusers: [{user: {token: hunter2}}]"
    with pytest.raises(InputErrors) as exc:
        validate_config(good_sdr() | {"ctfleet:kubeconfig": bad}, "sdr-oriental", inputs.registry, SRC,
                        secret_keys={"ctfleet:kubeconfig"})
    assert "has no context 'sdr-oriental' (ctfleet:kubernetes.context); it has: other" in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_localhost_images_only_on_a_development_stack(inputs):
    raw = good_sdr() | {"ctfleet:images": {**good_sdr()["ctfleet:images"], "collector": "localhost:5000/ctfleet/collector:0.1.0"}}
    assert errors(inputs, raw).splitlines()[1:] == [
        f"  {SRC}: ctfleet:images.collector: 'localhost:5000/ctfleet/collector:0.1.0' is on a registry only this machine can "
        "reach; the cluster's nodes cannot pull it (valid: the registry your team pushes to (infra/README.md, Images), or "
        "ctfleet:development: true for a test cluster)"]
    cfg = validate_config(raw | {"ctfleet:development": True}, "sdr-oriental", inputs.registry, SRC)
    assert cfg.images.collector.startswith("localhost:5000/")


def test_no_committed_stack_config_names_a_localhost_image():
    from ctfleet.stacks.program import STACKS_DIR

    root = Path(__file__).resolve().parent.parent
    files = sorted((root / STACKS_DIR).glob("Pulumi.*.yaml"))
    assert len(files) == 27
    assert [f.name for f in files if "localhost" in f.read_text() or "127.0.0.1" in f.read_text()] == []


def test_pulumi_passes_objects_as_json_text(inputs):
    from ctfleet.lab.pulumi_mocks import engine_config

    cfg = validate_config(engine_config(good_sdr()), "sdr-oriental", inputs.registry, SRC)
    assert cfg.images.collector == "registry.ctfleet.ma/ctfleet/collector:0.1.0"
    assert cfg.siteCidrs == ["10.2.0.0/16"]


def test_kube_state_metrics_targets_are_checked(inputs):
    """The clusters whose namespaces decide "hosted": each a cluster name and a host:port, regional stacks only."""
    text = errors(inputs, good_sdr() | {"ctfleet:dataPath": {"kubeStateMetrics": {
        "sdr-oriental": "kube-state-metrics.kube-system.svc", "SDL Oujda": "ksm.sdl-oujda.ma:8080"}}})
    assert f"{SRC}: ctfleet:dataPath.kubeStateMetrics.sdr-oriental: 'kube-state-metrics.kube-system.svc' is not host:port " \
           "(valid: e.g. kube-state-metrics.kube-system.svc:8080)" in text
    assert "ctfleet:dataPath.kubeStateMetrics.SDL Oujda: 'SDL Oujda' is not a cluster name" in text
    national = {"ctfleet:tier": "national", "ctfleet:kubernetes": {"context": "national"},
                "ctfleet:operatorGroups": ["national:operators"], "ctfleet:dataPath": {"kubeStateMetrics": {}}}
    assert "only a regional (sdr) stack has kubeStateMetrics, not tier national" in errors(inputs, national, "national")
    ok = validate_config(good_sdr() | {"ctfleet:dataPath": {"kubeStateMetrics": {"sdl-oujda": "ksm.sdl-oujda.ma:8080"}}},
                         "sdr-oriental", inputs.registry, SRC)
    assert ok.dataPath.kubeStateMetrics == {"sdl-oujda": "ksm.sdl-oujda.ma:8080"}
