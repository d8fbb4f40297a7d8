"""What a VM's saga reacts to (inputs) and what it asks for (commands): plain data, no Kafka.

The Kafka edge (planner/service.py) turns `mtv.v1` events into these inputs and these commands into
`mtv.v1` events (planner/effects.py), so the itinerary can be read and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mtv.model import PowerState, Vm
from mtv.planner.records import VmRecord


class PowerAction(Enum):
    SHUTDOWN_GUEST = "shutdown_guest"
    POWER_OFF = "power_off"
    POWER_ON = "power_on"


@dataclass(frozen=True)
class Timeouts:
    shutdown_seconds: float = 60.0  # graceful guest shutdown before a hard power off
    power_off_seconds: float = 300.0  # answer to a hard power off before the VM fails


@dataclass(frozen=True)
class Ctx:
    now: float  # epoch seconds, from the caller: the saga never reads a clock
    timeouts: Timeouts = Timeouts()


# --- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    vm: Vm  # the inventory's current view of the source VM
    provider_id: str


@dataclass(frozen=True)
class PowerResult:
    action: PowerAction
    power_state: PowerState
    error: str = ""


@dataclass(frozen=True)
class Tick:
    observed_power: PowerState = PowerState.UNKNOWN  # the inventory's latest power state of the source


@dataclass(frozen=True)
class PreparedDisk:
    key: int
    sink_uri: str
    volume_name: str = ""
    size: int = 0


@dataclass(frozen=True)
class Prepared:
    disks: tuple[PreparedDisk, ...]


@dataclass(frozen=True)
class TargetError:
    step: str  # "prepare", "convert", "create", "cleanup"
    reason: str


@dataclass(frozen=True)
class DiskDone:
    key: int
    sha256: str


@dataclass(frozen=True)
class DiskFailed:
    key: int
    reason: str


@dataclass(frozen=True)
class Created:
    namespace: str
    name: str
    location: str = ""


@dataclass(frozen=True)
class Cancel:
    reason: str = ""


@dataclass(frozen=True)
class Retry:
    pass


Input = Start | PowerResult | Tick | Prepared | TargetError | DiskDone | DiskFailed | Created | Cancel | Retry


# --- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestPower:
    action: PowerAction


@dataclass(frozen=True)
class RequestPrepare:
    pass


@dataclass(frozen=True)
class RequestTransfer:
    key: int
    attempt: int


@dataclass(frozen=True)
class CancelTransfer:
    key: int
    reason: str


@dataclass(frozen=True)
class RequestConvert:
    pass


@dataclass(frozen=True)
class RequestCleanup:
    pass


Command = RequestPower | RequestPrepare | RequestTransfer | CancelTransfer | RequestConvert | RequestCleanup


@dataclass(frozen=True)
class Outcome:
    """A saga step's result: the new record, the commands to publish, and why nothing happened if so."""

    record: VmRecord
    commands: tuple[Command, ...] = ()
    note: str = ""  # an ignored duplicate or late event, for the log
    rejected: str = ""  # the input names something this VM does not have: dead-letter it


CDI_UPLOAD_SCHEME = "cdi-upload://"


@dataclass(frozen=True)
class SinkRef:
    """Where a disk goes, from PreparedDisk.sink_uri: a local file, or a CDI upload into namespace/pvc."""

    path: str = ""
    namespace: str = ""
    pvc_name: str = ""

    @property
    def is_upload(self) -> bool:
        return bool(self.pvc_name)


def parse_sink(uri: str) -> SinkRef | None:
    """`/abs/path` or `cdi-upload://<namespace>/<datavolume>`; None for anything else."""
    if uri.startswith(CDI_UPLOAD_SCHEME):
        namespace, _, name = uri[len(CDI_UPLOAD_SCHEME):].partition("/")
        return SinkRef(namespace=namespace, pvc_name=name) if namespace and name and "/" not in name else None
    return SinkRef(path=uri) if uri.startswith("/") else None
