"""Run dirs and their manifest: the one contract between stages.

A run dir (``runs/<model>-<size>/``) holds a ``manifest.json`` that names every artifact with its
sha256; stages never call each other's internals, they meet here. ``layout`` names the files and
checks output paths, ``io`` writes atomically, ``manifest`` reads (bounded), checks and writes the
manifest, ``locks`` keeps one writer per run dir (and one filler per cache folder).
"""

from vggbench.artifacts.io import (  # noqa: F401
    DISK_FULL_BYTES,
    PATH_ERRNOS,
    STORAGE_ERRNOS,
    PathLike,
    atomic_path,
    sha256_file,
    storage_problem,
    write_bytes_atomic,
    write_json_atomic,
)
from vggbench.artifacts.layout import (  # noqa: F401
    CACHE_DIR,
    CHECKPOINT_INDEX_PATH,
    CURVES_FILE,
    HISTORY_FILE,
    INPUT_NAME,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    MAX_MANIFEST_BYTES,
    MAX_NAME_BYTES,
    MXNET_FILES,
    ONNX_VARIANT_FILES,
    PARAMS_FILE,
    SYMBOL_FILE,
    check_output_dir,
    check_output_file,
    check_run_name,
    default_run_name,
    find_enclosing_run_dir,
    is_plain_name,
    manifest_path,
    run_dir_for,
)
from vggbench.artifacts.locks import (  # noqa: F401
    LOCK_SUFFIX,
    RunDirLock,
    cache_lock,
    describe_holder,
    force_staging_dir,
    lock_path_for,
    pid_alive,
    read_lock_holder,
    remove_force_leftovers,
    remove_orphan_temp_files,
    run_dir_lock,
    swap_in,
)
from vggbench.artifacts.manifest import (  # noqa: F401
    check_manifest,
    parse_manifest,
    read_history,
    read_manifest,
    record_file,
    verify_all,
    verify_file,
    write_manifest,
)
