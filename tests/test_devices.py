"""The devices of an extract run's sinks (`videolt.devices.resolve_devices`): every GPU by default, the
first N, an explicit list of one kind, and one-line errors for a GPU that is not there."""

from __future__ import annotations

import pytest

from videolt.devices import resolve_devices
from videolt.errors import ConfigError


@pytest.mark.parametrize("devices,device,gpus,expected", [
    (None, "auto", 0, ["cpu"]),  # on a CPU, one sink stays the default
    (None, "auto", 3, ["cuda:0", "cuda:1", "cuda:2"]),  # every GPU there is
    ("auto", "auto", 2, ["cuda:0", "cuda:1"]),
    (None, "cpu", 4, ["cpu"]),
    (None, "cuda", 4, ["cuda:0"]),
    (None, "cuda:2", 4, ["cuda:2"]),
    (2, "auto", 4, ["cuda:0", "cuda:1"]),
    ("3", "auto", 4, ["cuda:0", "cuda:1", "cuda:2"]),
    ("cuda:1,cuda:3", "auto", 4, ["cuda:1", "cuda:3"]),
    ("cpu,cpu", "auto", 0, ["cpu", "cpu"]),  # how tests run several sinks without a GPU
])
def test_sink_devices(devices, device, gpus, expected):
    assert resolve_devices(devices, device, gpus) == expected


@pytest.mark.parametrize("devices,gpus,message", [
    (2, 0, "devices: 2 GPUs asked, 0 here (for CPU sinks list them: cpu,cpu)"),
    ("5", 4, "devices: 5 GPUs asked, 4 here"),
    ("cuda:4", 4, "devices: cuda:4 asked, but there are 4 GPUs (cuda:0 to cuda:3)"),
    ("cuda:0", 0, "devices: cuda:0 asked, but there is no GPU here (use cpu)"),
    ("cpu,cuda:0", 1, "devices: expected auto, N or a list of devices of one kind"),
    ("gpu0", 1, "devices: expected cpu, cuda or cuda:N, got 'gpu0'"),
])
def test_devices_that_are_not_there_are_one_line_errors(devices, gpus, message):
    with pytest.raises(ConfigError) as info:
        resolve_devices(devices, "auto", gpus)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
