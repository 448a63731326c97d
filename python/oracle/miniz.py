"""Pure-stdlib replay of the zip-opening steps PyTorch's vendored miniz runs
when torch.load() takes the zip path (torch cannot be installed here; see loaders.py).

The source it follows is pytorch/pytorch third_party/miniz-3.0.2/miniz.c
(stored versions 01f9ef32... and e62b3613...; the reader part is identical in
both): mz_zip_reader_init() -> mz_zip_reader_init_internal() ->
mz_zip_reader_read_central_dir() -> mz_zip_reader_locate_header_sig().
PyTorchStreamReader::init() calls mz_zip_reader_init(ar, size, 0) (flags = 0),
with m_pRead = istream_read_func -> BufferAdapter::read(), and
m_archive_size = the number of bytes from the file's position at open time to
its end.

Model: `data` is the whole stream and torch opens it at position 0. Reading is
data[ofs:ofs+n]. A read that comes back short makes miniz fail. Where real
torch would raise instead (BufferAdapter seeks to a negative Py_ssize_t), the
replay returns False too: in both cases torch does not open the file.

All C integer widths are copied: mz_uint/mz_uint32 are 32-bit, mz_uint64 is
64-bit and wraps, mz_int64 is signed 64-bit.
"""

from __future__ import annotations

_U32_MAX = 0xFFFFFFFF          # MZ_UINT32_MAX
_U16_MAX = 0xFFFF              # MZ_UINT16_MAX
_M64 = (1 << 64) - 1           # mz_uint64 wrap-around

# enum values, as they appear in miniz.c (pytorch copy)
_EOCD_SIG = 0x06054B50         # MZ_ZIP_END_OF_CENTRAL_DIR_HEADER_SIG
_CDH_SIG = 0x02014B50          # MZ_ZIP_CENTRAL_DIR_HEADER_SIG
_Z64_EOCD_SIG = 0x06064B50     # MZ_ZIP64_END_OF_CENTRAL_DIR_HEADER_SIG
_Z64_LOC_SIG = 0x07064B50      # MZ_ZIP64_END_OF_CENTRAL_DIR_LOCATOR_SIG
_LDH_SIZE = 30                 # MZ_ZIP_LOCAL_DIR_HEADER_SIZE
_CDH_SIZE = 46                 # MZ_ZIP_CENTRAL_DIR_HEADER_SIZE
_EOCD_SIZE = 22                # MZ_ZIP_END_OF_CENTRAL_DIR_HEADER_SIZE
_Z64_EOCD_SIZE = 56            # MZ_ZIP64_END_OF_CENTRAL_DIR_HEADER_SIZE
_Z64_LOC_SIZE = 20             # MZ_ZIP64_END_OF_CENTRAL_DIR_LOCATOR_SIZE
_Z64_EXTRA_ID = 0x0001         # MZ_ZIP64_EXTENDED_INFORMATION_FIELD_HEADER_ID
_FLAG_LOCAL_DIR_IS_MASKED = 8192  # MZ_ZIP_GENERAL_PURPOSE_BIT_FLAG_LOCAL_DIR_IS_MASKED
_SCAN_BUF = 4096               # sizeof(buf_u32) in mz_zip_reader_locate_header_sig


def _le16(b: bytes, o: int) -> int:
    return b[o] | (b[o + 1] << 8)


def _le32(b: bytes, o: int) -> int:
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def _le64(b: bytes, o: int) -> int:
    return _le32(b, o) | (_le32(b, o + 4) << 32)


def _read(data: bytes, ofs: int, n: int) -> bytes:
    """m_pRead(pIO_opaque, file_ofs, pBuf, n): file_ofs is an mz_uint64.

    An offset outside [0, len(data)) gives a short read (0 bytes); real torch
    raises instead (a negative seek), which also fails the open."""
    if ofs < 0 or ofs > len(data):
        return b""
    return data[ofs:ofs + n]


def _locate_header_sig(data: bytes, record_sig: int, record_size: int):
    """mz_zip_reader_locate_header_sig(). Returns the offset, or None for MZ_FALSE."""
    archive_size = len(data)
    if archive_size < record_size:
        return None
    # cur_file_ofs = MZ_MAX((mz_int64)m_archive_size - (mz_int64)sizeof(buf_u32), 0);
    cur = max(archive_size - _SCAN_BUF, 0)
    while True:
        # n = (int)MZ_MIN(sizeof(buf_u32), m_archive_size - cur_file_ofs)
        n = min(_SCAN_BUF, archive_size - cur)
        buf = _read(data, cur, n)
        if len(buf) != n:
            return None
        i = n - 4
        while i >= 0:
            if _le32(buf, i) == record_sig and (archive_size - (cur + i)) >= record_size:
                break
            i -= 1
        if i >= 0:
            return cur + i
        # Give up if we've searched the entire file, or gone back "too far" (~64kb)
        if cur == 0 or (archive_size - cur) >= (_U16_MAX + record_size):
            return None
        # cur_file_ofs = MZ_MAX(cur_file_ofs - (sizeof(buf_u32) - 3), 0);
        # The subtraction is done in size_t (unsigned). When cur_file_ofs < 4093
        # it wraps, MZ_MAX keeps the huge unsigned value, and the store back
        # into mz_int64 gives a negative offset. The next m_pRead then gets
        # (mz_uint64)negative: miniz's memory/file readers return 0, and torch's
        # BufferAdapter seeks to a negative position and raises. Either way the
        # open fails, so stop here.
        nxt = cur - (_SCAN_BUF - 3)
        if nxt < 0:
            return None
        cur = nxt


def _read_central_dir(data: bytes, pytorch_zip64_patch: bool = True) -> tuple[bool, int]:
    """mz_zip_reader_read_central_dir(pZip, flags=0). Returns (ok, m_total_files).

    pytorch_zip64_patch=True  -> third_party/miniz-3.0.2 (torch 2.6 and later)
    pytorch_zip64_patch=False -> third_party/miniz-2.1.0 (torch 2.5 and earlier)
    The two differ only in the zip64 extra-field block of the per-entry loop."""
    archive_size = len(data)
    if archive_size < _EOCD_SIZE:
        return False, 0                                     # MZ_ZIP_NOT_AN_ARCHIVE
    cur = _locate_header_sig(data, _EOCD_SIG, _EOCD_SIZE)
    if cur is None:
        return False, 0                                     # MZ_ZIP_FAILED_FINDING_CENTRAL_DIR
    eocd = _read(data, cur, _EOCD_SIZE)
    if len(eocd) != _EOCD_SIZE:
        return False, 0                                     # MZ_ZIP_FILE_READ_FAILED
    if _le32(eocd, 0) != _EOCD_SIG:
        return False, 0                                     # MZ_ZIP_NOT_AN_ARCHIVE

    zip64 = False
    zip64_has_extended_info_fields = False   # only the 2.1.0 code reads it
    loc = b""
    z64 = b""
    if cur >= (_Z64_LOC_SIZE + _Z64_EOCD_SIZE):
        loc = _read(data, cur - _Z64_LOC_SIZE, _Z64_LOC_SIZE)
        if len(loc) == _Z64_LOC_SIZE:
            if _le32(loc, 0) == _Z64_LOC_SIG:
                z64_ofs = _le64(loc, 8)
                if z64_ofs > ((archive_size - _Z64_EOCD_SIZE) & _M64):
                    return False, 0                         # MZ_ZIP_NOT_AN_ARCHIVE
                z64 = _read(data, z64_ofs, _Z64_EOCD_SIZE)
                if len(z64) == _Z64_EOCD_SIZE:
                    if _le32(z64, 0) == _Z64_EOCD_SIG:
                        zip64 = True

    total_files = _le16(eocd, 10)          # MZ_ZIP_ECDH_CDIR_TOTAL_ENTRIES_OFS
    entries_on_disk = _le16(eocd, 8)       # MZ_ZIP_ECDH_CDIR_NUM_ENTRIES_ON_DISK_OFS
    num_this_disk = _le16(eocd, 4)         # MZ_ZIP_ECDH_NUM_THIS_DISK_OFS
    cdir_disk_index = _le16(eocd, 6)       # MZ_ZIP_ECDH_NUM_DISK_CDIR_OFS
    cdir_size = _le32(eocd, 12)            # MZ_ZIP_ECDH_CDIR_SIZE_OFS   (mz_uint)
    cdir_ofs = _le32(eocd, 16)             # MZ_ZIP_ECDH_CDIR_OFS_OFS    (mz_uint64)

    if zip64:
        total_disks = _le32(loc, 16)       # MZ_ZIP64_ECDL_TOTAL_NUMBER_OF_DISKS_OFS
        z_total = _le64(z64, 32)           # MZ_ZIP64_ECDH_CDIR_TOTAL_ENTRIES_OFS
        z_on_disk = _le64(z64, 24)         # MZ_ZIP64_ECDH_CDIR_NUM_ENTRIES_ON_DISK_OFS
        z_rec_size = _le64(z64, 4)         # MZ_ZIP64_ECDH_SIZE_OF_RECORD_OFS
        z_cdir_size = _le64(z64, 40)       # MZ_ZIP64_ECDH_CDIR_SIZE_OFS
        if z_rec_size < (_Z64_EOCD_SIZE - 12):
            return False, 0                                 # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED
        if total_disks != 1:
            return False, 0                                 # MZ_ZIP_UNSUPPORTED_MULTIDISK
        if z_total > _U32_MAX:
            return False, 0                                 # MZ_ZIP_TOO_MANY_FILES
        total_files = z_total
        if z_on_disk > _U32_MAX:
            return False, 0                                 # MZ_ZIP_TOO_MANY_FILES
        entries_on_disk = z_on_disk
        if z_cdir_size > _U32_MAX:
            return False, 0                                 # MZ_ZIP_UNSUPPORTED_CDIR_SIZE
        cdir_size = z_cdir_size
        num_this_disk = _le32(z64, 16)     # MZ_ZIP64_ECDH_NUM_THIS_DISK_OFS
        cdir_disk_index = _le32(z64, 20)   # MZ_ZIP64_ECDH_NUM_DISK_CDIR_OFS
        cdir_ofs = _le64(z64, 48)          # MZ_ZIP64_ECDH_CDIR_OFS_OFS

    if total_files != entries_on_disk:
        return False, 0                                     # MZ_ZIP_UNSUPPORTED_MULTIDISK
    if ((num_this_disk | cdir_disk_index) != 0) and ((num_this_disk != 1) or (cdir_disk_index != 1)):
        return False, 0                                     # MZ_ZIP_UNSUPPORTED_MULTIDISK
    # 3.0.2: cdir_size < (mz_uint64)m_total_files * 46; 2.1.0 multiplies in 32 bits.
    # The 32-bit wrap cannot change the result: more entries than cdir_size/46
    # always fail in the loop below (n < 46).
    need = total_files * _CDH_SIZE if pytorch_zip64_patch else (total_files * _CDH_SIZE) & _U32_MAX
    if cdir_size < need:
        return False, 0                                     # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED
    if ((cdir_ofs + cdir_size) & _M64) > archive_size:      # 64-bit sum, may wrap
        return False, 0                                     # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED

    if total_files:
        cdir = _read(data, cdir_ofs, cdir_size)
        if len(cdir) != cdir_size:
            return False, 0                                 # MZ_ZIP_FILE_READ_FAILED
        p = 0
        n = cdir_size                                       # mz_uint
        for _ in range(total_files):
            if n < _CDH_SIZE or _le32(cdir, p) != _CDH_SIG:
                return False, 0                             # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED
            comp_size = _le32(cdir, p + 20)                 # MZ_ZIP_CDH_COMPRESSED_SIZE_OFS
            decomp_size = _le32(cdir, p + 24)               # MZ_ZIP_CDH_DECOMPRESSED_SIZE_OFS
            local_header_ofs = _le32(cdir, p + 42)          # MZ_ZIP_CDH_LOCAL_HEADER_OFS
            filename_size = _le16(cdir, p + 28)             # MZ_ZIP_CDH_FILENAME_LEN_OFS
            ext_data_size = _le16(cdir, p + 30)             # MZ_ZIP_CDH_EXTRA_LEN_OFS

            # 3.0.2 (pytorch): if ((ext_data_size) && (MZ_MAX(...) == MZ_UINT32_MAX))
            # 2.1.0:            if ((!m_zip64_has_extended_info_fields) && (ext_data_size) && (MZ_MAX(...) == MZ_UINT32_MAX))
            if (pytorch_zip64_patch or not zip64_has_extended_info_fields) and ext_data_size \
                    and max(comp_size, decomp_size, local_header_ofs) == _U32_MAX:
                remaining = ext_data_size                   # mz_uint32 extra_size_remaining
                if _CDH_SIZE + filename_size + ext_data_size > n:
                    # Extra data runs past the central directory buffer: miniz
                    # re-reads it from the file at cdir_ofs + 46 + filename_size
                    # (the directory start, not this entry's start).
                    extra = _read(data, (cdir_ofs + _CDH_SIZE + filename_size) & _M64, ext_data_size)
                    if len(extra) != ext_data_size:
                        return False, 0                     # MZ_ZIP_FILE_READ_FAILED
                    e = 0
                else:
                    extra = cdir
                    e = p + _CDH_SIZE + filename_size
                while True:                                 # do { ... } while (extra_size_remaining);
                    if remaining < 4:
                        return False, 0                     # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED
                    field_id = _le16(extra, e)
                    field_data_size = _le16(extra, e + 2)
                    if field_data_size + 4 > remaining:
                        return False, 0                     # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED
                    if field_id == _Z64_EXTRA_ID:
                        zip64 = True                        # m_zip64 = TRUE
                        zip64_has_extended_info_fields = True
                        break
                    e += 4 + field_data_size
                    remaining = remaining - 4 - field_data_size
                    if not remaining:
                        break
                # PyTorch's addition: read the zip64 values. Each 8-byte read is
                # bounded by what is left of the whole extra area, not by the
                # 0x0001 field's own data size.
                if pytorch_zip64_patch and remaining >= 4:   # block absent in 2.1.0
                    remaining -= 4
                    e += 4
                    if decomp_size == _U32_MAX and remaining >= 8:
                        decomp_size = _le64(extra, e)
                        remaining -= 8
                        e += 8
                    if comp_size == _U32_MAX and remaining >= 8:
                        comp_size = _le64(extra, e)
                        remaining -= 8
                        e += 8
                    if local_header_ofs == _U32_MAX and remaining >= 8:
                        local_header_ofs = _le64(extra, e)
                        remaining -= 8
                        e += 8

            if comp_size != _U32_MAX and decomp_size != _U32_MAX:
                # NB: MZ_READ_LE32(p + MZ_ZIP_CDH_METHOD_OFS) reads method AND
                # file time (4 bytes at offset 10); "stored" means both are 0.
                if ((_le32(cdir, p + 10) == 0) and (decomp_size != comp_size)) or (decomp_size and not comp_size):
                    return False, 0                         # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED

            disk_index = _le16(cdir, p + 34)                # MZ_ZIP_CDH_DISK_START_OFS
            if disk_index == _U16_MAX or ((disk_index != num_this_disk) and (disk_index != 1)):
                return False, 0                             # MZ_ZIP_UNSUPPORTED_MULTIDISK

            if comp_size != _U32_MAX:
                if ((local_header_ofs + _LDH_SIZE + comp_size) & _M64) > archive_size:
                    return False, 0                         # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED

            bit_flags = _le16(cdir, p + 8)                  # MZ_ZIP_CDH_BIT_FLAG_OFS
            if bit_flags & _FLAG_LOCAL_DIR_IS_MASKED:
                return False, 0                             # MZ_ZIP_UNSUPPORTED_ENCRYPTION

            total_header_size = _CDH_SIZE + _le16(cdir, p + 28) + _le16(cdir, p + 30) + _le16(cdir, p + 32)
            if total_header_size > n:
                return False, 0                             # MZ_ZIP_INVALID_HEADER_OR_CORRUPTED
            n -= total_header_size
            p += total_header_size

    # (the filename sort that follows cannot fail)
    return True, total_files


def torch_zip_would_open(data: bytes, *, torch_ge_2_6: bool = True) -> bool:
    """True when PyTorch's miniz (mz_zip_reader_init with flags 0, the archive
    read from offset 0 of `data`) would open the archive and find at least one
    central-directory entry.

    torch_ge_2_6=True replays third_party/miniz-3.0.2 with PyTorch's zip64
    patch (PRs #140041/#141266; torch 2.6, 2.7, 2.8, 2.9). False replays
    third_party/miniz-2.1.0 (torch 2.5.x and earlier).

    This is only the miniz step. torch.load goes further, and can still fail:
      * torch.serialization._is_zipfile: data[:4] must be b"PK\\x03\\x04", or
        torch never takes the zip path (see torch_load_takes_zip_path);
      * PyTorchStreamReader::init: entry 0's name must contain '/', and it
        reads the version record (and .data/serialization_id if present);
      * _is_torchscript_zip -> getAllRecords: every entry's name must start
        with the prefix of entry 0;
      * then _load reads byteorder, .format_version, .storage_alignment and
        data.pkl.
    """
    data = bytes(data)
    ok, total_files = _read_central_dir(data, pytorch_zip64_patch=torch_ge_2_6)
    return ok and total_files >= 1


def torch_load_takes_zip_path(data: bytes) -> bool:
    """torch.serialization._is_zipfile on a stream at position 0: f.read(4) == b'PK\\x03\\x04'."""
    return bytes(data[:4]) == b"PK\x03\x04"


def miniz_members(data: bytes) -> dict:
    """name -> bytes of each stored member, read through the central directory at the offset
    the end record stores (where miniz reads it, not where zipfile computes it). Only for files
    ``torch_zip_would_open`` accepts."""
    data = bytes(data)
    cur = _locate_header_sig(data, _EOCD_SIG, _EOCD_SIZE)
    eocd = data[cur:cur + _EOCD_SIZE]
    total, cdir_ofs = _le16(eocd, 10), _le32(eocd, 16)
    out, p = {}, cdir_ofs
    for _ in range(total):
        if data[p:p + 4] != b"PK\x01\x02":
            break
        method, comp = _le16(data, p + 10), _le32(data, p + 20)
        n, x, c = _le16(data, p + 28), _le16(data, p + 30), _le16(data, p + 32)
        local = _le32(data, p + 42)
        name = data[p + 46:p + 46 + n].decode("utf-8", "replace")
        if method == 0 and data[local:local + 4] == b"PK\x03\x04":
            ln, lx = _le16(data, local + 26), _le16(data, local + 28)
            start = local + 30 + ln + lx
            out[name] = data[start:start + comp]
        p += 46 + n + x + c
    return out


__all__ = ["torch_zip_would_open", "torch_load_takes_zip_path", "miniz_members"]
