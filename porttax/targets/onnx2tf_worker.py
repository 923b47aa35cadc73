"""Child process that runs onnx2tf: `python -m porttax.targets.onnx2tf_worker MODEL.onnx OUT_DIR`.

onnx2tf is run in its own process because it reconfigures TensorFlow's logging and global state,
and prints freely; porttax keeps its own process clean and reads back only the SavedModel. The
working directory is a scratch folder holding the sample-image file onnx2tf would otherwise try to
download (it runs a dummy inference on image-shaped inputs), so conversion works offline.
"""

from __future__ import annotations

import sys


def main(onnx_path: str, out_dir: str) -> int:
    from porttax._frameworks import import_tf, import_torch

    import_torch()  # owns the import order even in this child (see porttax._frameworks)
    import_tf()
    import onnx
    import onnx2tf

    model = onnx.load(onnx_path, load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    # keep every input in the source's own layout (NCHW stays NCHW), so the SavedModel is a drop-in
    # replacement fed exactly what the source is fed
    names = [i.name for i in model.graph.input if i.name not in initializers
             and len(i.type.tensor_type.shape.dim) >= 3]
    onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=out_dir, non_verbose=True,
                    keep_ncw_or_nchw_or_ncdhw_input_names=names or None, output_signaturedefs=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
