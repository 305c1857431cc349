"""The options of ``recon batch``: on its command line and in a manifest's ``[batch]`` table."""

from __future__ import annotations

from recon.commands.options import Option

__all__ = ["OPTIONS"]

OPTIONS = (
    Option("output", "path", "batch output folder: new, empty, or one an earlier recon batch "
           "wrote (its up-to-date jobs are skipped)", short="-o", in_config=False,
           required=True, metavar="OUT"),
    Option("workers", "int", "worker processes of the local Dask cluster", minimum=1,
           maximum=4096, default_text="one per CPU core, or one per GPU with --gpus",
           exclusive_with=("scheduler",)),
    Option("gpus", "str", "one worker per GPU: 'all' or a number of GPUs (dask-cuda when "
           "installed, else workers pinned with CUDA_VISIBLE_DEVICES); with --scheduler, every "
           "job asks for the worker resource GPU=1", metavar="all|N",
           default_text="none: CPU workers"),
    Option("scheduler", "str", "address of a running Dask scheduler (tcp://host:8786) to run "
           "on instead of a local cluster; workers must see the inputs' paths",
           metavar="ADDRESS"),
    Option("retries", "int", "extra attempts of a job after a system error (a job whose "
           "worker dies is rescheduled by Dask regardless)", default=2, minimum=0, maximum=100),
    Option("kernel-threads", "int", "numba threads of each job's kernels", minimum=1,
           maximum=4096, default_text="CPU cores // workers on a local cluster"),
    Option("dashboard-address", "str", "where the local cluster serves Dask's dashboard "
           "(needs bokeh; 'none': no dashboard)", default=":8787"),
)  # fmt: skip
