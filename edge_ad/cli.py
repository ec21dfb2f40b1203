"""``edge-ad`` command line. Each command lives in ``edge_ad/commands/<name>.py`` and is imported
only when invoked, so ``edge-ad run`` never imports torch and starts fast on a robot."""
from __future__ import annotations

import importlib

import click

# command name -> module in edge_ad.commands that defines a click command named ``cmd``
COMMANDS = {
    "train": "train",
    "eval": "evaluate",
    "trace": "trace",
    "export": "export",
    "run": "run",
    "batch": "batch",
    "calibrate": "calibrate",
    "bench": "bench",
    "build-engine": "build_engine",
    "keygen": "keygen",
    "sign": "sign",
    "verify": "verify",
}


# import names of the workstation extra (pip install 'edge-ad[train]'), absent from the lean runtime
TRAIN_PACKAGES = ("torch", "onnx", "onnxscript", "sklearn", "matplotlib", "tqdm")


def missing_package_message(command: str, package: str) -> str:
    """The one line for a command that needs a package the install lacks (onnxruntime: either runtime extra)."""
    if package == "onnxruntime":
        from edge_ad.runtime.backends.onnxruntime_backend import INSTALL_ONNXRUNTIME
        how = f"Install one: {INSTALL_ONNXRUNTIME}"
    else:
        how = "Install the workstation extra: pip install 'edge-ad[train]'"
    return f"'edge-ad {command}' needs the Python package {package!r}, which is not installed. {how}"


class LazyGroup(click.Group):
    """Imports each command's module when it is invoked; a missing package (when the module is imported,
    or a training package or onnxruntime imported while the command runs) is one line, exit 1, not a
    traceback; so is an OSError naming a file (an --out that cannot be written, a full disk: "Error: FILE: No
    space left on device")."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:
            package = (e.name or "").split(".")[0]
            if package not in TRAIN_PACKAGES + ("onnxruntime",):
                raise
            raise click.ClickException(missing_package_message(ctx.invoked_subcommand or "?", package)) from None
        except OSError as e:     # a file that cannot be written or read (an unwritable --out, a full disk): one line
            if e.filename is None:
                raise
            where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else f"{e.filename}"
            raise click.ClickException(f"{where}: {e.strerror or e}") from None

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        try:
            mod = importlib.import_module(f"edge_ad.commands.{COMMANDS[name]}")
        except ModuleNotFoundError as e:
            if e.name and (e.name == "edge_ad.commands" or e.name.startswith("edge_ad.commands.")):
                raise click.ClickException(       # the install itself is broken: "No such command" would hide it
                    f"'edge-ad {name}': this install of edge-ad lacks its command module {e.name}; reinstall "
                    "edge-ad (pip install --force-reinstall --no-deps edge-ad, or the wheel / checkout)") from None
            missing = e.name or str(e)

            @click.command(name, help=f"(unavailable: needs the Python package {missing!r})")
            def unavailable():
                raise click.ClickException(missing_package_message(name, missing))
            return unavailable
        return mod.cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-ad")
def main():
    """edge-ad: RGB-D anomaly scoring by GAN latent search, from training to the robot."""


if __name__ == "__main__":
    main()
