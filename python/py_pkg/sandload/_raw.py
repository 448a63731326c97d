"""Camera RAW files the way ``rawpy`` reads them: ``imread`` gives a :class:`RawPy`-shaped
object, decoded by rawler inside the sandbox."""

from __future__ import annotations

import enum
from collections import namedtuple
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["imread", "RawPy", "ImageSizes", "RawType", "ThumbFormat", "Thumbnail", "NoThumbnailError"]

#: The fields of ``rawpy.RawPy.sizes``, in rawpy's order.
ImageSizes = namedtuple(
    "ImageSizes",
    [
        "raw_height", "raw_width", "height", "width", "top_margin", "left_margin", "iheight", "iwidth",
        "pixel_aspect", "flip", "crop_left_margin", "crop_top_margin", "crop_width", "crop_height",
    ],
)


class _RawpyEnum(enum.Enum):
    """An enum whose members also equal rawpy's members of the same enum, name and value, so that
    ported code comparing with ``rawpy.RawType.Flat`` keeps working."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, enum.Enum) and type(other).__name__ == type(self).__name__:
            return (other.name, other.value) == (self.name, self.value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))


class RawType(_RawpyEnum):
    """rawpy's ``RawType``: a mosaic (one sample per pixel) or a stack of planes (linear RAW)."""

    Flat = 0
    Stack = 1


class ThumbFormat(_RawpyEnum):
    """rawpy's ``ThumbFormat``. sandload's thumbnails are always ``BITMAP``: the embedded JPEG is
    decoded in the sandbox, never handed out as bytes for an unsandboxed decoder to parse."""

    JPEG = 1
    BITMAP = 2


#: What :meth:`RawPy.extract_thumb` returns, as rawpy's ``Thumbnail``.
Thumbnail = namedtuple("Thumbnail", ["format", "data"])


class NoThumbnailError(LookupError):
    """The file has no embedded preview (rawpy raises ``LibRawNoThumbnailError``)."""

# EXIF orientation -> LibRaw's `flip` (bit 0 mirror horizontally, bit 1 vertically, bit 2
# transpose), as LibRaw maps the Orientation tag.
_FLIP = {0: 0, 1: 0, 2: 1, 3: 3, 4: 2, 5: 4, 6: 6, 7: 7, 8: 5}

# sRGB (D65) linear RGB -> XYZ, the matrix dcraw/LibRaw use to derive `color_matrix`.
_XYZ_RGB = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float64,
)


# rawpy.Params' defaults (rawpy 0.28), by the attribute names a Params object stores: a field that
# still has its default was not asked for.
_PARAMS_DEFAULTS: Dict[str, Any] = {
    "user_qual": -1, "half_size": False, "four_color_rgb": False, "dcb_iterations": 0,
    "dcb_enhance_fl": False, "fbdd_noiserd": 0, "threshold": 0.0, "med_passes": 0,
    "use_camera_wb": False, "use_auto_wb": False, "user_mul": [0, 0, 0, 0], "output_color": 1,
    "output_bps": 8, "user_flip": -1, "user_black": -1, "user_cblack": None, "user_sat": -1,
    "no_auto_bright": False, "no_auto_scale": False, "auto_bright_thr": 0.01,
    "adjust_maximum_thr": 0.75, "bright": 1.0, "highlight": 0, "exp_correc": -1, "exp_shift": 1.0,
    "exp_preser": 0.0, "gamm": (0.45004500450045004, 4.5), "aber": (1, 1), "bad_pixels": None,
}


def _value(v: Any) -> Any:
    """An enum member's value (rawpy's enums are ``enum.Enum``), anything else as it is."""
    return getattr(v, "value", v)


def _params_from_keywords(kw: Dict[str, Any]) -> Dict[str, Any]:
    """rawpy.Params' attributes for ``postprocess(**kw)``, converted as ``rawpy.Params(**kw)``
    converts its keywords (``gamma`` is stored as ``gamm = (1 / power, slope)``, ``user_wb`` as
    ``user_mul``, ``demosaic_algorithm`` as ``user_qual``, None as LibRaw's -1...)."""
    out: Dict[str, Any] = {}
    for name, value in kw.items():
        if name == "demosaic_algorithm":
            out["user_qual"] = -1 if value is None else int(_value(value))
        elif name in ("half_size", "four_color_rgb", "dcb_iterations", "use_camera_wb", "use_auto_wb",
                      "output_bps", "no_auto_bright", "adjust_maximum_thr", "bright", "no_auto_scale"):
            out[name] = value
        elif name == "dcb_enhance":
            out["dcb_enhance_fl"] = value
        elif name == "fbdd_noise_reduction":
            out["fbdd_noiserd"] = int(_value(value))
        elif name == "noise_thr":
            out["threshold"] = 0.0 if value is None else value
        elif name == "median_filter_passes":
            out["med_passes"] = value
        elif name == "user_wb":
            out["user_mul"] = [0, 0, 0, 0] if value is None else list(value)
        elif name == "output_color":
            out["output_color"] = int(_value(value))
        elif name in ("user_flip", "user_black", "user_sat"):
            out[name] = -1 if value is None else value
        elif name == "user_cblack":
            out["user_cblack"] = value
        elif name == "auto_bright_thr":
            out["auto_bright_thr"] = 0.01 if value is None else value
        elif name == "highlight_mode":
            out["highlight"] = int(_value(value))
        elif name == "exp_shift":
            if value is not None:
                out["exp_correc"], out["exp_shift"] = 1, value
        elif name == "exp_preserve_highlights":
            out["exp_preser"] = value
        elif name == "gamma":
            out["gamm"] = _PARAMS_DEFAULTS["gamm"] if value is None else (1.0 / value[0], value[1])
        elif name == "chromatic_aberration":
            out["aber"] = (1, 1) if value is None else (1.0 / value[0], 1.0 / value[1])
        elif name == "bad_pixels_path":
            out["bad_pixels"] = value
        else:
            raise TypeError(f"postprocess() got an unexpected keyword argument {name!r}")
    return out


def _params_attributes(params) -> Dict[str, Any]:
    """The attributes of a ``rawpy.Params`` (or any object with the same attributes)."""
    fields = dict(vars(params)) if hasattr(params, "__dict__") else {}
    unknown = sorted(set(fields) - set(_PARAMS_DEFAULTS))
    if unknown:
        raise NotImplementedError(f"rawpy.Params fields sandload does not know: {', '.join(unknown)}")
    return fields


def _differs(name: str, value: Any) -> bool:
    default = _PARAMS_DEFAULTS[name]
    if isinstance(default, (float, tuple)):
        return not np.allclose(value, default)
    return value != default


# LibRaw's demosaic numbers (rawpy.DemosaicAlgorithm) sandload implements; -1 is LibRaw's default.
_DEMOSAIC = {-1: "ahd", 0: "linear", 3: "ahd"}
# rawpy.ColorSpace numbers sandload implements.
_COLOR = {0: "raw", 1: "srgb", 2: "adobe", 3: "wide", 4: "prophoto", 5: "xyz", 6: "aces", 7: "p3d65", 8: "rec2020"}
# Attributes that select LibRaw processing sandload does not implement.
_NOT_IMPLEMENTED = ("four_color_rgb", "dcb_iterations", "dcb_enhance_fl", "fbdd_noiserd", "threshold",
                    "med_passes", "user_cblack", "highlight", "exp_correc", "exp_shift", "exp_preser",
                    "aber", "bad_pixels")


def _postprocess_arguments(p: Dict[str, Any]) -> Dict[str, Any]:
    """The Rust developer's arguments for rawpy.Params attributes `p`; NotImplementedError naming
    every option that asks for what sandload does not implement."""
    refused = [f"{n}={p[n]!r}" for n in _NOT_IMPLEMENTED if n in p and _differs(n, p[n])]
    if int(p["user_qual"]) not in _DEMOSAIC:
        refused.append(f"demosaic_algorithm={p['user_qual']} (LINEAR and AHD are implemented)")
    if int(p["output_color"]) not in _COLOR:
        refused.append(f"output_color={p['output_color']} (raw to Rec2020 are implemented)")
    if refused:
        raise NotImplementedError(
            "sandload's postprocess implements LibRaw's white balance, LINEAR and AHD demosaic, the "
            "colour spaces raw to ACES, gamma, brightness, levels, half_size and flips; not implemented: "
            + ", ".join(refused)
        )
    if int(p["output_bps"]) not in (8, 16):
        raise ValueError(f"output_bps must be 8 or 16, got {p['output_bps']}")
    user_mul = [float(v) for v in p["user_mul"]]
    power, slope = p["gamm"]
    return dict(
        demosaic=_DEMOSAIC[int(p["user_qual"])],
        half_size=bool(p["half_size"]),
        white_balance="camera" if p["use_camera_wb"] else "auto" if p["use_auto_wb"] else "daylight",
        # LibRaw uses user_mul when its first multiplier is set.
        user_wb=user_mul if user_mul[0] else None,
        output_color=_COLOR[int(p["output_color"])],
        gamma=(1.0 / float(power), float(slope)),
        auto_bright=None if p["no_auto_bright"] else float(p["auto_bright_thr"]),
        bright=float(p["bright"]),
        output_bps=int(p["output_bps"]),
        user_flip=None if int(p["user_flip"]) < 0 else int(p["user_flip"]),
        user_black=None if int(p["user_black"]) < 0 else int(p["user_black"]),
        user_sat=None if int(p["user_sat"]) <= 0 else int(p["user_sat"]),
        no_auto_scale=bool(p["no_auto_scale"]),
        adjust_maximum_thr=float(p["adjust_maximum_thr"]),
    )


class RawPy:
    """A decoded RAW frame with rawpy's attribute names. Arrays are read-only and share the
    decoded buffer; ``postprocess`` and ``bayer_planes`` compute new arrays.

    Only Bayer (2x2) mosaics have ``raw_pattern``-style colour indices as rawpy gives them
    (R=0, G=1, B=2, the second green=3); an X-Trans or linear file has ``raw_pattern`` None.
    """

    def __init__(self, frame) -> None:
        self._frame = frame
        self._info: Dict[str, Any] = frame._info()
        info = self._info
        self._height, self._width, self._cpp = info["height"], info["width"], info["cpp"]
        samples = frame._samples()
        if samples.size and samples.ctypes.data % 2:
            samples = samples.copy()
            samples.flags.writeable = False
        shape = (self._height, self._width) if self._cpp == 1 else (self._height, self._width, self._cpp)
        self._raw = samples.view("<u2").reshape(shape)
        area = info.get("active_area") or {"x": 0, "y": 0, "width": self._width, "height": self._height}
        self._area = area
        self._pattern = self._bayer_indices()

    # --- rawpy's attributes -------------------------------------------------------------------

    @property
    def raw_image(self) -> np.ndarray:
        """The whole sensor, ``raw_height x raw_width`` ``uint16`` (x cpp for linear RAW)."""
        return self._raw

    @property
    def raw_image_visible(self) -> np.ndarray:
        """The active area (the sensor without its masked margins)."""
        a = self._area
        return self._raw[a["y"] : a["y"] + a["height"], a["x"] : a["x"] + a["width"]]

    @property
    def sizes(self) -> ImageSizes:
        a = self._area
        return ImageSizes(
            raw_height=self._height,
            raw_width=self._width,
            height=a["height"],
            width=a["width"],
            top_margin=a["y"],
            left_margin=a["x"],
            iheight=a["height"],
            iwidth=a["width"],
            pixel_aspect=1.0,
            flip=_FLIP.get(self._info["orientation"], 0),
            **self._crop(),
        )

    def _crop(self) -> Dict[str, int]:
        """The recommended crop inside the visible area, as LibRaw's ``crop_*`` fields; zeros
        when the file gives none (or one that is the whole area)."""
        a, c = self._area, self._info.get("crop_area")
        zero = dict(crop_left_margin=0, crop_top_margin=0, crop_width=0, crop_height=0)
        if not c or (c["x"], c["y"], c["width"], c["height"]) == (a["x"], a["y"], a["width"], a["height"]):
            return zero
        left, top = c["x"] - a["x"], c["y"] - a["y"]
        if left < 0 or top < 0:
            return zero
        return dict(crop_left_margin=left, crop_top_margin=top, crop_width=c["width"], crop_height=c["height"])

    @property
    def raw_pattern(self) -> Optional[np.ndarray]:
        """The 2x2 colour-index pattern at the active area's top-left corner (``uint8``)."""
        if self._pattern is None:
            return None
        a = self._area
        return np.roll(self._pattern, (-a["y"], -a["x"]), axis=(0, 1))

    @property
    def raw_colors(self) -> Optional[np.ndarray]:
        """The colour index of every sensor pixel, like ``raw_image``."""
        if self._pattern is None:
            return None
        return np.tile(self._pattern, ((self._height + 1) // 2, (self._width + 1) // 2))[: self._height, : self._width]

    @property
    def raw_colors_visible(self) -> Optional[np.ndarray]:
        """The colour index of every pixel of ``raw_image_visible``."""
        colors = self.raw_colors
        if colors is None:
            return None
        a = self._area
        return colors[a["y"] : a["y"] + a["height"], a["x"] : a["x"] + a["width"]]

    @property
    def num_colors(self) -> int:
        return 3

    @property
    def color_desc(self) -> bytes:
        return b"RGBG"

    @property
    def black_level_per_channel(self) -> List[int]:
        """The black level of colour indices 0-3 (R, G, B, second G)."""
        info = self._info
        bw, bh, cpp = info["black_width"], info["black_height"], info["cpp"]
        levels = info["black_levels"]

        def at(row: int, col: int, c: int = 0) -> float:
            return levels[((row % bh) * bw + col % bw) * cpp + c]

        if self._pattern is None:
            return [int(round(at(0, 0, min(c, cpp - 1)))) for c in (0, 1, 2, 1)]
        out = [0, 0, 0, 0]
        for r in range(2):
            for c in range(2):
                out[int(self._pattern[r, c])] = int(round(at(r, c)))
        if not bool((self._pattern == 3).any()):
            out[3] = out[1]
        return out

    @property
    def white_level(self) -> int:
        return int(max(self._info["white_levels"]))

    @property
    def camera_white_level_per_channel(self) -> Optional[List[int]]:
        """Per-channel white levels where the file records them (DNG's ``WhiteLevel``), else None
        (as rawpy)."""
        if self._info["format"] != "dng":
            return None
        w = self._info["white_levels"]
        return [int(w[min(c, len(w) - 1)]) for c in (0, 1, 2, 1)]

    @property
    def raw_type(self) -> RawType:
        """``RawType.Flat`` for a mosaic, ``RawType.Stack`` for linear (demosaiced) RAW."""
        return RawType.Flat if self._cpp == 1 else RawType.Stack

    @property
    def daylight_whitebalance(self) -> List[float]:
        """White-balance multipliers for daylight (R, G, B, 0), derived from the camera's colour
        matrix as LibRaw derives them (the reciprocals of the rows of camera-from-sRGB); 1, 1, 1
        without a matrix."""
        cam_xyz = self.rgb_xyz_matrix.astype(np.float64)[:3]
        if not cam_xyz.any():
            return [1.0, 1.0, 1.0, 0.0]
        sums = (cam_xyz @ _XYZ_RGB).sum(axis=1)
        return [float(1 / v) if abs(v) > 1e-5 else 1.0 for v in sums] + [0.0]

    @property
    def tone_curve(self) -> np.ndarray:
        """Not available: rawler, sandload's decoder, applies a file's tone curve while decoding
        and does not report it."""
        raise NotImplementedError("sandload's decoder (rawler) applies a file's tone curve while decoding and does not report it")

    @property
    def camera_whitebalance(self) -> List[float]:
        """As-shot multipliers R, G, B, second G (0.0 where the file does not say)."""
        wb = [0.0 if v is None else float(v) for v in self._info["wb_coeffs"]]
        return wb

    @property
    def rgb_xyz_matrix(self) -> np.ndarray:
        """The file's XYZ -> camera matrix, 4 x 3 (rows R, G, B, other; zeros if none)."""
        m = self._info.get("xyz_to_cam")
        return np.zeros((4, 3), np.float32) if m is None else np.array(m, dtype=np.float32)

    @property
    def color_matrix(self) -> np.ndarray:
        """Camera -> linear sRGB, 3 x 4, derived from ``rgb_xyz_matrix`` as LibRaw derives it
        (rows of camera-from-sRGB normalised to 1, then the pseudo-inverse); zeros if none."""
        cam_xyz = self.rgb_xyz_matrix.astype(np.float64)[:3]
        out = np.zeros((3, 4), np.float32)
        if not cam_xyz.any():
            return out
        cam_rgb = cam_xyz @ _XYZ_RGB
        sums = cam_rgb.sum(axis=1, keepdims=True)
        if np.any(sums == 0):
            return out
        rgb_cam = np.linalg.pinv(cam_rgb / sums)
        out[:, :3] = rgb_cam
        return out

    # --- sandload's additions --------------------------------------------------------------------

    @property
    def info(self) -> Dict[str, Any]:
        """Everything sandload read (make, model, ISO, exposure, lens, crop, CFA...), as the
        CLI's JSON gives it."""
        return dict(self._info)

    @property
    def receipt(self) -> Dict[str, Any]:
        """What the sandbox did to decode the file."""
        return self._frame._receipt()

    def bayer_planes(self) -> np.ndarray:
        """Half-resolution planes of the image area, ``float32`` ``4 x h x w`` in R, G1, G2, B
        order, scaled to [0, 1] after black and white level: the usual ML input."""
        return self._frame.bayer_planes()

    def raw_value(self, row: int, column: int) -> int:
        return int(self._raw[row, column])

    def raw_value_visible(self, row: int, column: int) -> int:
        return int(self.raw_image_visible[row, column])

    def raw_color(self, row: int, column: int) -> int:
        if self._pattern is None:
            raise ValueError("this frame has no 2x2 colour filter pattern")
        return int(self._pattern[row % 2, column % 2])

    def postprocess(self, params=None, **options) -> np.ndarray:
        """The image developed as LibRaw develops it, with rawpy's options and defaults:
        ``h x w x 3``, ``uint8`` (``output_bps=8``) or ``uint16``, the active area
        (``sizes.height x sizes.width``) turned to the file's orientation (``user_flip``
        overrides it).

        Options come as rawpy's keywords or in a ``rawpy.Params`` (``params``), field by field:
        ``demosaic_algorithm`` (LINEAR, AHD; AHD by default as in LibRaw), ``half_size``,
        ``use_camera_wb``, ``use_auto_wb``, ``user_wb``, ``output_color`` (raw, sRGB, Adobe,
        Wide, ProPhoto, XYZ, ACES), ``output_bps``, ``gamma``, ``no_auto_bright``,
        ``auto_bright_thr``, ``bright``, ``user_flip``, ``user_black``, ``user_sat``,
        ``no_auto_scale``, ``adjust_maximum_thr``. Any other option set to other than its default
        raises ``NotImplementedError`` naming it, rather than being ignored.
        """
        fields = dict(_PARAMS_DEFAULTS)
        if params is not None:
            fields.update(_params_attributes(params))
        fields.update(_params_from_keywords(options))
        return self._frame._postprocess(**_postprocess_arguments(fields))

    def extract_thumb(self) -> Thumbnail:
        """The largest embedded preview, decoded in the sandbox: ``Thumbnail(ThumbFormat.BITMAP,
        array)``, ``h x w x 3`` ``uint8``, in the file's stored orientation (``sizes.flip``
        applies to it as to the RAW image). rawpy hands a JPEG preview out as bytes; sandload
        does not, since decoding them is what the sandbox is for.

        Raises:
            NoThumbnailError: the file has no embedded preview.
            sandload.Error: the preview could not be decoded (the reason's subclass).
        """
        data = self._frame._thumbnail()
        if data is None:
            raise NoThumbnailError(f"{self._info.get('file', 'the file')}: no embedded preview")
        return Thumbnail(ThumbFormat.BITMAP, data)

    def close(self) -> None:
        """Frees nothing early (arrays may still share the buffer); for rawpy compatibility."""

    def __enter__(self) -> "RawPy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- helpers -----------------------------------------------------------------------------

    def _bayer_indices(self) -> Optional[np.ndarray]:
        """rawpy's colour indices of the sensor's 2x2 pattern at (0, 0): R 0, G 1, B 2, and 3 for
        the green that shares a row with blue, as LibRaw numbers four-colour Bayer."""
        cfa = self._info.get("cfa")
        if self._cpp != 1 or not cfa or len(cfa) != 4 or sorted(cfa) != ["B", "G", "G", "R"]:
            return None
        grid = [list(cfa[0:2]), list(cfa[2:4])]
        out = np.zeros((2, 2), np.uint8)
        for r in range(2):
            for c in range(2):
                letter = grid[r][c]
                if letter == "R":
                    out[r, c] = 0
                elif letter == "B":
                    out[r, c] = 2
                else:
                    out[r, c] = 3 if "B" in grid[r] else 1
        return out


def imread(source, *, sandbox=None) -> RawPy:
    """Decodes a camera RAW file (DNG or a maker's format) in the sandbox, as ``rawpy.imread``
    opens one::

        with sandload.imread("IMG_0001.dng") as raw:
            mosaic = raw.raw_image_visible        # uint16, no copy
            rgb = raw.postprocess(output_bps=16)

    ``source`` is a path or the file's bytes.

    Raises:
        sandload.Error: the subclass for why the file was not decoded.
    """
    from ._sandbox import default_sandbox

    sandbox = sandbox if sandbox is not None else default_sandbox()
    return RawPy(sandbox._decode_raw(source))
