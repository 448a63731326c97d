# Types of the extension module (python/src/lib.rs). The public API is in the .py modules.
from os import PathLike
from types import ModuleType
from typing import Any, BinaryIO, Dict, List, Optional, Tuple, TypeVar, Union, final

import numpy as np
import numpy.typing as npt

_Source = Union[str, PathLike[str], bytes, bytearray, memoryview, BinaryIO]

__all__ = ["Sandbox", "Checkpoint", "RawFrame", "BytesOwner", "PrivateMap", "samples", "ABI_VERSION", "_cli_main"]

_S = TypeVar("_S", bound="Sandbox")

ABI_VERSION: int

def _cli_main(argv: List[str]) -> int: ...

@final
class BytesOwner: ...

@final
class PrivateMap: ...

@final
class Checkpoint:
    @property
    def file(self) -> str: ...
    def keys(self) -> List[str]: ...
    def _offset_keys(self) -> List[str]: ...
    def _info(self, name: str) -> Tuple[str, List[int]]: ...
    def _bytes(self, name: str) -> npt.NDArray[np.uint8]: ...
    def _writable(self, name: str) -> npt.NDArray[np.uint8]: ...
    def _slice(self, name: str, ranges: List[Tuple[int, int]]) -> Tuple[npt.NDArray[np.uint8], List[int]]: ...
    def metadata(self) -> Optional[Dict[str, str]]: ...
    def _receipts(self) -> List[Dict[str, Any]]: ...
    def __len__(self) -> int: ...

@final
class RawFrame:
    def _samples(self) -> npt.NDArray[np.uint8]: ...
    def _info(self) -> Dict[str, Any]: ...
    def _receipt(self) -> Dict[str, Any]: ...
    def bayer_planes(self) -> npt.NDArray[np.float32]: ...
    def _thumbnail(self) -> Optional[npt.NDArray[np.uint8]]: ...
    def _postprocess(
        self,
        *,
        demosaic: str,
        half_size: bool,
        white_balance: str,
        user_wb: Optional[List[float]],
        output_color: str,
        gamma: Tuple[float, float],
        auto_bright: Optional[float],
        bright: float,
        output_bps: int,
        user_flip: Optional[int],
        user_black: Optional[int],
        user_sat: Optional[int],
        no_auto_scale: bool,
        adjust_maximum_thr: float,
    ) -> npt.NDArray[Any]: ...

class Sandbox:
    def __new__(
        cls: type[_S],
        *,
        max_file_bytes: Optional[int] = None,
        max_header_bytes: Optional[int] = None,
        max_tensors: Optional[int] = None,
        max_pixels: Optional[int] = None,
        max_shards: Optional[int] = None,
        guest_memory_bytes: Optional[int] = None,
        guest_time: Optional[float] = None,
        data_access: str = "map",
        max_concurrent: Optional[int] = None,
        cache: Union[bool, str, PathLike[str], None] = None,
    ) -> _S: ...
    @property
    def limits(self) -> Dict[str, Union[int, float]]: ...
    @property
    def guests_running(self) -> int: ...
    def _open_checkpoint(self, source: _Source, name: Optional[str] = None) -> Checkpoint: ...
    def _decode_raw(self, source: _Source, name: Optional[str] = None) -> RawFrame: ...
    def _decode_image(
        self, source: _Source, name: Optional[str] = None
    ) -> Tuple[npt.NDArray[Any], str, int, Optional[bytes], Dict[str, Any]]: ...
    def _inspect(self, source: _Source, digest: bool = False, name: Optional[str] = None) -> Dict[str, Any]: ...
    def _open(self, source: _Source, name: Optional[str] = None) -> Tuple[str, Any]: ...
    def _open_report(
        self, source: _Source, digest: bool = False, name: Optional[str] = None
    ) -> Tuple[Dict[str, Any], Optional[str], Any]: ...

# Only in builds with the `test-samples` feature (the package's own tests).
samples: ModuleType
