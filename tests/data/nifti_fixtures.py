#!/usr/bin/python3
"""Independent NIfTI reference for tests/data/NiftiIoTest.cpp, written with nibabel (Debian's
python3-nibabel), never with the code under test.

  nifti_fixtures.py make DIR        writes DIR/<case>.nii[.gz] files, DIR/<case>.f64 (the voxels
                                    nibabel reads, float64, i fastest) and DIR/cases.json
  nifti_fixtures.py dump FILE RAW   prints nibabel's view of FILE as JSON on stdout and writes its
                                    voxels (float64, i fastest) to RAW
"""
import gzip
import io
import json
import sys

import nibabel as nib
import numpy as np

rng = np.random.default_rng(20261125)

# An oblique affine (rotation about z, anisotropic voxels, offset): exercises every matrix term.
c, s = np.cos(0.3), np.sin(0.3)
OBLIQUE = np.array([[1.1 * c, -1.2 * s, 0.0, -90.5],
                    [1.1 * s, 1.2 * c, 0.0, -126.25],
                    [0.0, 0.0, 1.3, -72.0],
                    [0.0, 0.0, 0.0, 1.0]])
OTHER = np.array([[-2.0, 0.0, 0.0, 10.0],
                  [0.0, 2.0, 0.0, 20.0],
                  [0.0, 0.0, 2.0, 30.0],
                  [0.0, 0.0, 0.0, 1.0]])
SHAPE = (5, 4, 3)  # nx, ny, nz: all different, so any axis mix-up fails


def voxels(dtype, shape=SHAPE):
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        lo, hi = max(info.min, -30000), min(info.max, 60000)
        arr = rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
        arr.flat[0], arr.flat[1] = info.min, min(info.max, 2**31 - 1)  # the extremes survive
        return arr
    return (rng.standard_normal(shape) * 100).astype(dtype)


def patched(img, **fields):
    """The file bytes of `img` (uncompressed) with raw header fields overwritten: nibabel's own
    writer recomputes scl_slope/scl_inter and the codes, so traps are planted after it."""
    raw = img.to_bytes()
    hdr_size = 540 if isinstance(img, nib.Nifti2Image) else 348
    hdr = type(img.header).from_fileobj(io.BytesIO(raw[:hdr_size]))
    for key, value in fields.items():
        hdr[key] = value
    return hdr.binaryblock + raw[hdr_size:]


def expected_affine(img):
    h = img.header
    if int(h['sform_code']) > 0:
        return h.get_sform()
    if int(h['qform_code']) > 0:
        return h.get_qform()
    # NIfTI "method 1": diag(pixdim) with no offset. (nibabel's img.affine would centre the
    # grid here instead; the NIfTI standard and nifticlib do not, and neither do we.)
    return np.diag(list(np.abs(h['pixdim'][1:4])) + [1.0])


def describe(path):
    img = nib.load(path)
    data = np.asarray(img.get_fdata(dtype=np.float64))
    h = img.header
    return img, data, {
        'shape': [int(x) for x in data.shape[:3]],
        'dim0': int(h['dim'][0]),
        'datatype': str(img.get_data_dtype().newbyteorder('=').name),
        'spacing': [float(x) for x in h.get_zooms()[:3]],
        'affine': [float(x) for x in expected_affine(img).ravel()],
        'qform': [float(x) for x in h.get_qform().ravel()],
        'sform_code': int(h['sform_code']),
        'qform_code': int(h['qform_code']),
        'nifti_version': 2 if isinstance(img, nib.Nifti2Image) else 1,
        'min': float(np.min(data)), 'max': float(np.max(data)),
        'mean': float(np.mean(data)), 'nonzero': int(np.count_nonzero(data)),
    }


def write_raw(data, path):
    np.asarray(data, dtype='<f8').ravel(order='F').tofile(path)


def save(out, name, content, gz=True):
    path = f'{out}/{name}.nii' + ('.gz' if gz else '')
    with (gzip.open(path, 'wb') if gz else open(path, 'wb')) as f:
        f.write(content)
    return path


def make(out):
    cases = {}

    def add(name, img, gz=True, **fields):
        path = save(out, name, patched(img, **fields), gz)
        _, data, desc = describe(path)
        write_raw(data, f'{out}/{name}.f64')
        desc['file'] = path
        desc['raw'] = f'{out}/{name}.f64'
        cases[name] = desc

    for dt in ['uint8', 'int8', 'int16', 'uint16', 'int32', 'float32', 'float64']:
        img = nib.Nifti1Image(voxels(np.dtype(dt)), OBLIQUE)
        img.set_data_dtype(dt)
        add(f'dtype_{dt}', img, sform_code=4, qform_code=0)
    img = nib.Nifti1Image(voxels(np.dtype('int16')), OBLIQUE)
    add('scaled_int16', img, scl_slope=2.5, scl_inter=-3.0)
    img = nib.Nifti1Image(voxels(np.dtype('uint8')), OBLIQUE)
    add('scaled_uint8_inter_only', img, scl_slope=1.0, scl_inter=100.0)
    img = nib.Nifti1Image(voxels(np.dtype('float32')), OBLIQUE)
    add('slope_zero', img, scl_slope=0.0, scl_inter=7.0)
    img = nib.Nifti1Image(voxels(np.dtype('float32')), OBLIQUE)
    add('slope_nan', img, scl_slope=np.nan, scl_inter=7.0)

    # sform wins over qform; qform is used when sform_code is 0; pixdim when both are 0.
    img = nib.Nifti1Image(voxels(np.dtype('float32')), None)
    img.set_qform(OTHER, code=1)
    img.set_sform(OBLIQUE, code=2)
    add('sform_over_qform', img)
    img = nib.Nifti1Image(voxels(np.dtype('float32')), None)
    img.set_qform(OTHER @ np.diag([1.5, 1, 1, 1]), code=1)
    img.set_sform(OBLIQUE, code=0)
    add('qform_only', img)
    img = nib.Nifti1Image(voxels(np.dtype('float32')), np.diag([2.0, 3.0, 4.0, 1.0]))
    add('pixdim_only', img, sform_code=0, qform_code=0)

    img = nib.Nifti1Image(voxels(np.dtype('int16'), SHAPE + (1,)), OBLIQUE)
    add('four_d_one_volume', img)
    img = nib.Nifti1Image(voxels(np.dtype('float32')), OBLIQUE)
    add('plain_nii', img, gz=False)
    hdr = nib.Nifti1Header(endianness='>')
    img = nib.Nifti1Image(voxels(np.dtype('int16')), OBLIQUE, header=hdr)
    img.set_data_dtype(np.dtype('>i2'))
    add('big_endian_int16', img)
    img = nib.Nifti2Image(voxels(np.dtype('float32')), OBLIQUE)
    add('nifti2_float32', img)
    # Large enough that truncating the .gz cuts the voxel stream, not just the header.
    img = nib.Nifti1Image((rng.standard_normal((40, 36, 32)) * 100).astype(np.float32), OBLIQUE)
    add('large_float32', img)

    # Refused inputs: not one 3-D volume.
    save(out, 'bad_two_d', nib.Nifti1Image(voxels(np.dtype('float32'), (5, 4)), OBLIQUE).to_bytes())
    save(out, 'bad_four_d', nib.Nifti1Image(voxels(np.dtype('float32'), SHAPE + (2,)), OBLIQUE).to_bytes())

    with open(f'{out}/cases.json', 'w') as f:
        json.dump(cases, f, indent=1)


def dump(path, raw):
    _, data, desc = describe(path)
    write_raw(data, raw)
    json.dump(desc, sys.stdout)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'make':
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == 'dump':
        dump(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
