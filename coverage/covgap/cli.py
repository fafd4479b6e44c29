"""The ``covgap`` command line: a thin layer over the library.

Only this module configures logging (``-v``/``-q``). Errors covgap raises on
purpose (:class:`~covgap.errors.CovgapError`) end the command with one line and
exit status 1; anything else is a bug and shows its traceback with ``-v``.
"""

from __future__ import annotations

import functools
import gc
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from covgap import __version__
from covgap.config import Config, describe_config, load_config
from covgap.errors import CovgapError

log = logging.getLogger("covgap")

SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "data" / "sample" / "covgap.toml"


class CovgapGroup(click.Group):
    """Turns covgap's own errors into one line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CovgapError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; the previous outputs are unchanged.", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:  # a bug: say so in one line, details with -v
            if logging.getLogger("covgap").isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"Error: internal error {type(err).__name__}: {err} (run again with -v for the traceback "
                       "and report it)", err=True)
            ctx.exit(2)


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.INFO - 10 * verbose + 10 * quiet
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s" if verbose else "%(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger("covgap")
    root.handlers[:] = [handler]
    root.setLevel(max(logging.DEBUG, min(level, logging.ERROR)))
    root.propagate = False


@click.group(cls=CovgapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="covgap")
@click.option("-v", "--verbose", count=True, help="More detail (repeat for debug output and tracebacks).")
@click.option("-q", "--quiet", count=True, help="Less output: only warnings and the scorecard.")
def main(verbose: int, quiet: int) -> None:
    """covgap: where a district still has no mobile signal and no fibre broadband.

    Intersects villages, mobile signal measurements and fibre routes into dead
    zones, village indicators and scorecards against the district's targets, and
    writes maps for planners and gap packages for operators.
    """
    _setup_logging(verbose, quiet)


# Options shared by the commands: each defined once here (as rasterio's rio/options.py does).
def config_option_with_help(text: str):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        default=Path("covgap.toml"), show_default=True, help=text)


def out_option_with_help(text: str):
    return click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=text)


config_option = config_option_with_help("The covgap.toml that names the inputs and thresholds.")
overwrite_option = click.option(
    "--overwrite", is_flag=True,
    help="Replace an output folder (or map pages) that covgap did not write, deleting what it holds. Never one "
         "that is, contains or lies inside an input; without it such a folder is refused.")


engine_option = click.option(
    "--engine", type=click.Choice(["local", "dask"]), default=None,
    help="Reading engine: local (this machine's cores) or dask (Dask workers: a LocalCluster, or the [engine] scheduler "
         "of the config; needs pip install 'covgap[dask]'; docs/scale.md). Default: [engine] name of the config, else local.")


def output_options(func):
    func = overwrite_option(func)
    func = click.option("--lang", type=click.Choice(["vi", "en"]), default=None,
                        help="Language of the maps (default: [output] lang of the config, else vi).")(func)
    func = click.option("--maps", "maps_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Folder for the HTML maps (default: [output] maps_dir).")(func)
    func = out_option_with_help("Folder for the GeoPackage, CSV scorecards and GeoTIFFs (default: [output] dir).")(func)
    return func


def _execute(config: Config, paths: list[Path] | None = None, *, full_rebuild: bool = True, dry_run: bool = False,
             wait: bool = False, overwrite: bool = False, prepared=None) -> int:
    """Take measurement files into the store, rewrite every output atomically, print the summary and scorecard.

    The one "write everything" path of ``run``/``demo`` (``full_rebuild``: a new store
    from the configured files) and ``refresh`` (new files merged into the stored
    statistics). Returns the exit status: 0, or 3 when some file was refused. ``prepared``:
    the layers and the layer side worked out beforehand (``watch``; covgap.refresh.prepare).

    The maps are redrawn after a new analysis, and also when they were drawn from
    other results than the output folder holds (a run killed after the swap).
    """
    from covgap import maps, outputs, refresh
    from covgap.scorecard import format_scorecard

    started = time.monotonic()
    out_dir = Path(config.output.dir)
    outputs.check_output_locations(config, paths or (), overwrite=overwrite)
    rendered: dict = {}  # the map pages, rendered while the partner packages are written (_write_products)
    with outputs.output_lock(out_dir, wait=wait), _scaffolding_child(config, dry_run) as scaffolding:
        outcome = refresh.update_outputs(config, paths, full_rebuild=full_rebuild, dry_run=dry_run,
                                         write_products=functools.partial(_write_products, rendered=rendered,
                                                                          scaffolding=scaffolding),
                                         progress=_progress_bar, overwrite=overwrite, prepared=prepared)
        written_maps = []
        if outcome.results is not None or (
                not dry_run and not maps.maps_are_current(out_dir, Path(config.output.maps_dir))):
            written_maps = _write_maps(outcome.results, config, overwrite=overwrite,
                                       rendered=rendered.get("maps") if outcome.results is not None else None)
    for line in refresh.summary_lines(outcome, out_dir):
        click.echo(line)
    status = 3 if outcome.with_status("refused") else 0
    if outcome.results is None:
        if written_maps:
            click.echo(f"Maps: {Path(config.output.maps_dir)}/ redrawn ({len(written_maps)} pages): they were behind "
                       f"the results in {out_dir}/")
        return status
    click.echo(f"Outputs: {out_dir}/  Maps: {Path(config.output.maps_dir)}/ ({len(written_maps)} pages)  "
               f"in {time.monotonic() - started:.1f} s")
    lang = config.output.lang
    long = outcome.results.scorecard_long  # in the run's language (config.output.lang)
    title = (f"Bảng điểm {config.study.name}" if lang == "vi" else f"Scorecard: {config.study.name}")
    click.echo("")
    click.echo(format_scorecard(long, title))
    return status


def _results_of(out: Path, config: Config):
    """The results of the output folder's measurement store (a folder covgap made), else of a fresh run."""
    from covgap import outputs, pipeline, refresh, store as store_mod

    folder = store_mod.store_dir(out)
    if outputs.is_owned(out) and (folder / store_mod.MANIFEST).is_file():
        layers = pipeline.load_layers(config)
        store = store_mod.load_store(folder)
        store_mod.check_compatible(store, store_mod.fingerprint(layers, config), folder)
        return refresh.analyse_store(store, folder, layers, config)
    return pipeline.run_pipeline(config)


def _scaffolding_child(config: Config, dry_run: bool) -> Any:
    """folium's map page scaffolding (covgap.mappage.scaffoldings) rendered by a forked child from the start of
    a run, while this process loads the layers on the other core: importing folium is some 0.4 s a run.
    Nothing for a dry run, or where this process has the scaffolding already (``covgap watch``)."""
    import contextlib

    from covgap import mappage, pipeline
    from covgap.forked import Forked

    if dry_run or mappage.has_scaffoldings():
        return contextlib.nullcontext(None)
    return Forked(mappage.scaffoldings, inline=pipeline.one_process(config))


def _write_products(results, folder: Path, rendered: dict | None = None, scaffolding: Any = None) -> None:
    """Everything that goes into the (temporary) output folder: tables, GeoPackage, GeoTIFFs, partner packages.

    The partner packages are written by a forked child meanwhile (covgap.forked): the second core.
    With ``rendered``, the map pages are rendered too, from the display layers just written,
    while the child finishes (``rendered["maps"]``; they are written only once the outputs are
    in place, by :func:`_write_maps`). Pages that cannot be rendered are left to it, which
    says why at the same point as before. ``scaffolding``: the child rendering the pages'
    scaffolding (:func:`_scaffolding_child`); if it failed, the scaffolding is rendered here.
    """
    from covgap import mappage, maps, outputs, partners, pipeline
    from covgap.forked import Forked

    with Forked(partners.write_partner_packages, results, folder / "partners",
                inline=pipeline.one_process(results.config)) as packages:  # an error or Ctrl-C stops it too
        outputs.write_outputs(results, folder)
        if scaffolding is not None:
            try:
                mappage.use_scaffoldings(scaffolding.result())
            except Exception as err:  # rendered here instead, where a real problem is reported as before
                log.debug("the map scaffolding from the child process is not used: %s", err)
        if rendered is not None:
            out = results.config.output
            try:
                rendered["maps"] = maps.render_maps(maps.read_map_layers(folder), lang=out.lang, assets=out.map_assets)
            except Exception:  # drawn again after the swap, where the error is reported as before
                rendered.pop("maps", None)
        packages.result()


_PROGRESS_MIN_BYTES = 20 * 2**20


def _progress_bar(label: str, total_bytes: int):
    """A progress bar (by bytes) for files of 20 MiB or more; nothing for small ones."""
    import contextlib

    if total_bytes < _PROGRESS_MIN_BYTES:
        return contextlib.nullcontext(None)
    return click.progressbar(length=total_bytes, label=f"Reading {label}", file=sys.stderr, show_pos=False,
                             show_percent=True, show_eta=True)


def _write_maps(results, config: Config, *, overwrite: bool = False, rendered=None) -> list[Path]:
    """Draw the maps from the display layers saved in the output folder (``results`` is not needed).

    The saved layers are what :func:`covgap.maps.map_layers` made of the results, so
    drawing from them is drawing from the results, and the maps record which layers
    they show (:func:`covgap.maps.maps_are_current`). ``rendered``: the pages already
    rendered from those same layers (in the temporary output folder, before it was swapped in).
    """
    from covgap import maps

    out = Path(config.output.dir)
    if rendered is None:
        rendered = maps.render_maps(maps.read_map_layers(out), lang=config.output.lang, assets=config.output.map_assets)
    return maps.write_rendered_maps(rendered, Path(config.output.maps_dir), source=out / maps.MAP_LAYERS_NAME,
                                    overwrite=overwrite)


@main.command()
@config_option
@output_options
@engine_option
def run(config_path: Path, out_dir: Path | None, maps_dir: Path | None, lang: str | None, overwrite: bool,
        engine: str | None) -> None:
    """Run the whole analysis on the inputs named in a covgap.toml.

    Writes the GeoPackage, CSV scorecards and GeoTIFFs to the output folder and
    the HTML maps to the maps folder, then prints the district scorecard. A
    measurement file that cannot be used is refused (one line each) and the others
    are used; exit status 3 then (docs/refresh.md).
    """
    config = load_config(config_path).replace_output(dir=out_dir, maps_dir=maps_dir, lang=lang).replace_engine(engine)
    click.get_current_context().exit(_execute(config, overwrite=overwrite))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@config_option
@click.option("--dry-run", is_flag=True, help="Report what would be taken in and rejected; change nothing.")
@click.option("--wait", is_flag=True, help="If another covgap run is writing the outputs, wait for it instead of stopping.")
@output_options
@engine_option
def refresh(paths: tuple[Path, ...], config_path: Path, dry_run: bool, wait: bool, out_dir: Path | None,
            maps_dir: Path | None, lang: str | None, overwrite: bool, engine: str | None) -> None:
    """Take new measurement files (or folders of them) in and update every output.

    Files already taken in (same SHA-256, whatever their name) are skipped; the
    others are read once, their cell statistics merged into the measurement store
    kept in <output>/store/, and every output is rewritten from the store, with
    changes.csv saying what changed. Without PATHS, the configured [inputs]
    measurements are used. Exit status 3 when some file was refused
    (docs/refresh.md).
    """
    config = load_config(config_path).replace_output(dir=out_dir, maps_dir=maps_dir, lang=lang).replace_engine(engine)
    click.get_current_context().exit(_execute(config, list(paths) or None, full_rebuild=False, dry_run=dry_run,
                                              wait=wait, overwrite=overwrite))


@main.command()
@config_option
@click.option("--every", "every_s", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between two looks at the measurement files.")
@click.option("--settle", "settle_s", type=click.FloatRange(min=0.0), default=10.0, show_default=True,
              help="Seconds a file must stay unchanged (size and time) before it is taken in, so that a file "
                   "still being copied is not read half-written.")
@output_options
@engine_option
def watch(config_path: Path, every_s: float, settle_s: float, out_dir: Path | None, maps_dir: Path | None,
          lang: str | None, overwrite: bool, engine: str | None) -> None:
    """Refresh the outputs whenever new measurement files arrive, until Ctrl-C (or SIGTERM).

    Looks at the configured [inputs] measurements (files and folders) every few
    seconds; files that are new or changed, once they have stopped changing, are
    taken in as by refresh, and every output and map is rewritten. The layers and
    what the analysis works out of them alone are loaded once (again when the
    configuration or a layer changes), so each refresh costs the new files, the
    analysis and the outputs only (docs/refresh.md, "Watching a folder").
    """
    from covgap import measurements as meas, outputs, refresh as refresh_mod, watch as watch_mod

    def current() -> Config:
        return load_config(config_path).replace_output(dir=out_dir, maps_dir=maps_dir, lang=lang).replace_engine(engine)

    config = current()  # a configuration that cannot be read stops the command at once
    warned: set[Path] = set()

    def inputs() -> tuple:
        try:
            now = current()
        except CovgapError as err:  # being edited: loaded again once it changes
            return (str(err), *watch_mod.inputs_state([config_path]))
        return watch_mod.inputs_state([config_path] + [p for label, p in outputs.input_paths(now)
                                                       if not label.startswith("[inputs] measurements")])

    def prepare() -> tuple[Config, refresh_mod.Prepared]:
        import folium  # noqa: F401  (the map pages' scaffolding: imported once here, not by the first refresh)

        now = current()
        return now, refresh_mod.prepare(now)

    def files(prepared: tuple[Config, refresh_mod.Prepared]) -> list[Path]:
        return meas.list_measurement_files(list(prepared[0].inputs.measurements), warned=warned)

    def take(prepared: tuple[Config, refresh_mod.Prepared], paths: list[Path]) -> int:
        click.echo(f"{time.strftime('%H:%M:%S')} {len(paths)} new or changed file(s): "
                   + ", ".join(p.name for p in paths[:5]) + (" …" if len(paths) > 5 else ""))
        busy["now"] = True
        started = time.monotonic()
        try:
            status = _execute(prepared[0], paths, full_rebuild=False, overwrite=overwrite, prepared=prepared[1])
        except KeyboardInterrupt:
            raise  # still busy: the handler below says the refresh was interrupted
        except BaseException:
            busy["now"] = False
            raise
        busy["now"] = False
        click.echo(f"{time.strftime('%H:%M:%S')} refreshed in {time.monotonic() - started:.2f} s; watching.")
        return status

    def stop(signum, frame) -> None:  # a service manager's stop (SIGTERM) ends it as Ctrl-C does
        raise KeyboardInterrupt

    busy = {"now": False}
    signal.signal(signal.SIGTERM, stop)
    if not config.inputs.measurements:
        raise CovgapError(f"{config_path}: [inputs] measurements names no file or folder to watch")
    click.echo(f"Watching {', '.join(str(p) for p in config.inputs.measurements)} every {every_s:g} s "
               f"(files taken in once unchanged for {settle_s:g} s); Ctrl-C to stop.")
    try:
        watch_mod.watch(inputs=inputs, prepare=prepare, files=files, refresh=take, echo=click.echo,
                        every_s=every_s, settle_s=settle_s)
    except KeyboardInterrupt:
        if busy["now"]:
            click.echo("Interrupted during a refresh; the outputs are those of the refresh before.", err=True)
            click.get_current_context().exit(130)
        click.echo("Stopped watching.")


@main.command()
@click.option("--data", "data_config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="covgap.toml of the sample district (default: data/sample/covgap.toml of this checkout).")
@output_options
@engine_option
def demo(data_config: Path | None, out_dir: Path | None, maps_dir: Path | None, lang: str | None,
         overwrite: bool, engine: str | None) -> None:
    """Run the analysis on the bundled sample district (Tư Nghĩa, Quảng Ngãi).

    Outputs go to ./out and maps to ./maps unless --out/--maps say otherwise.
    """
    path = data_config or SAMPLE_CONFIG
    if not path.is_file():
        raise CovgapError(f"{path}: sample district not found; run from a covgap checkout or give --data PATH/covgap.toml")
    config = load_config(path).replace_output(dir=out_dir or Path("out"), maps_dir=maps_dir or Path("maps"),
                                              lang=lang).replace_engine(engine)
    click.get_current_context().exit(_execute(config, overwrite=overwrite))


@main.command()
@config_option
@out_option_with_help("Output folder; the packages go to its partners/ subfolder (default: [output] dir).")
@overwrite_option
def export(config_path: Path, out_dir: Path | None, overwrite: bool) -> None:
    """Write only the gap packages for telecom partners, one per operator.

    Analyses the measurement store of the output folder (what run and refresh took
    in; without a store, the configured measurement files), then replaces
    <output>/partners/ whole: per operator a folder and a zip with Shapefiles, a
    GeoPackage, fields.csv and README.txt (docs/partners.md). The rest of the output
    folder is untouched. A partners/ folder covgap did not write is refused unless
    --overwrite (the one inside an output folder covgap made is its own).
    """
    from covgap import outputs, partners

    started = time.monotonic()
    config = load_config(config_path).replace_output(dir=out_dir)
    out = Path(config.output.dir)
    inputs = outputs.input_paths(config)
    outputs.check_clear_of_inputs(out, inputs, label="output folder")
    # A folder covgap made owns its partners/ subfolder; elsewhere partners/ must be missing, empty or ours.
    overwrite = overwrite or outputs.is_owned(out)
    outputs.check_replaceable(out / "partners", overwrite=overwrite, label="partner folder")
    with outputs.output_lock(out):
        results = _results_of(out, config)
        with outputs.atomic_output_dir(out / "partners", overwrite=overwrite, inputs=inputs) as tmp:
            zips = partners.write_partner_packages(results, tmp)
    for z in zips:  # the paths named the temporary folder, now swapped into place
        final = out / "partners" / z.name
        click.echo(f"{final}  ({final.stat().st_size} bytes)")
    click.echo(f"Partner packages: {len(zips)} operators ({', '.join(results.partner_operators) or 'none'}) in "
               f"{out / 'partners'}/  in {time.monotonic() - started:.1f} s")


@main.command("plan-measurements")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("covgap.toml"),
              show_default=True, help="The covgap.toml that names the inputs, the roads and the plan settings.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder; the plan goes to its measurement_plan/ subfolder (default: [output] dir).")
@overwrite_option
def plan_measurements(config_path: Path, out_dir: Path | None, overwrite: bool) -> None:
    """Plan where to measure next: a drive over the roads through the unmeasured cells that would give
    villages without a 4G verdict one.

    Analyses the measurement store of the output folder (what run and refresh took in; without a
    store, the configured measurement files) and replaces <output>/measurement_plan/ whole: one GPX
    file per day (waypoints and track), waypoints.csv (the village each waypoint serves), villages.csv,
    communes.csv, days.csv and summary.json (docs/method.md, Plans). Needs [inputs] roads.
    """
    from covgap import outputs

    started = time.monotonic()
    config = load_config(config_path).replace_output(dir=out_dir)
    if config.inputs.roads is None:
        raise CovgapError(f"{config_path}: [inputs] roads is not set; name a road line layer (e.g. an OpenStreetMap "
                          "export) in covgap.toml to plan a drive over it")
    out = Path(config.output.dir)
    inputs = outputs.input_paths(config)
    outputs.check_clear_of_inputs(out, inputs, label="output folder")
    overwrite = overwrite or outputs.is_owned(out)
    target = out / outputs.MEASUREMENT_PLAN_DIR
    outputs.check_replaceable(target, overwrite=overwrite, label="measurement plan folder")
    with outputs.output_lock(out):
        results = _results_of(out, config)
        with outputs.atomic_output_dir(target, overwrite=overwrite, inputs=inputs) as tmp:
            outputs.write_measurement_plan(results, tmp)
    assert results.measurement_plan is not None  # [inputs] roads is set (checked above)
    s = results.measurement_plan.summary
    click.echo(f"Measurement plan: {s['days']} days, {s['km']:.1f} km, {s['waypoints']} waypoints; "
               f"{s['villages_decided']} of {s['villages_targeted']} villages without a 4G verdict "
               f"({s['households_decided']:.0f} of {s['households_targeted']:.0f} households) would get one")
    click.echo(f"Files: {target}/ (day_01.gpx … day_{s['days']:02d}.gpx, waypoints.csv, villages.csv)  "
               f"in {time.monotonic() - started:.1f} s")


@main.command("map")
@config_option_with_help("The covgap.toml whose [output] folders and language are the defaults.")
@output_options
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also render each page as a PNG to print or share (A4 landscape, print style): the district to FILE, "
                   "each commune to FILE-<commune>.png. Needs Playwright and Chromium.")
@click.option("--pdf", "pdf", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also print each page to PDF (A4 landscape), named as for --png.")
def map_(config_path: Path, out_dir: Path | None, maps_dir: Path | None, lang: str | None, overwrite: bool,
         png: Path | None, pdf: Path | None) -> None:
    """Redraw the HTML maps from the last results in the output folder (no new analysis).

    For instance in English: covgap map --lang en. Without a covgap.toml, give
    --out (the folder of a previous run) and optionally --maps. With --png or --pdf,
    each page is also rendered in headless Chromium for printing and sharing.
    """
    from covgap import maps, outputs, snapshots

    for option, value in (("--png", png), ("--pdf", pdf)):
        if value is not None and value.suffix.lower() != "." + option[2:]:
            raise click.BadParameter(f"{value}: give a file name ending in .{option[2:]}", param_hint=option)

    if config_path.is_file():
        config = load_config(config_path).replace_output(dir=out_dir, maps_dir=maps_dir, lang=lang)
        out, folder, language = Path(config.output.dir), Path(config.output.maps_dir), config.output.lang
        assets = config.output.map_assets
        maps.check_maps_folder(folder, out_dir=out, inputs=outputs.input_paths(config), overwrite=overwrite, assets=assets)
    elif out_dir is not None:
        out, folder, language, assets = out_dir, maps_dir or Path("maps"), lang or "vi", "auto"
        maps.check_maps_folder(folder, out_dir=out, inputs=[], overwrite=overwrite, assets=assets)
    else:
        raise CovgapError(f"{config_path}: not found; give --config PATH/covgap.toml or --out FOLDER of a previous run")
    with outputs.output_lock(out):
        data = maps.read_map_layers(out)
        written = maps.write_maps_from_layers(data, folder, lang=language, source=out / maps.MAP_LAYERS_NAME,
                                              overwrite=overwrite, assets=assets)
    click.echo(f"Maps: {folder}/ ({len(written)} pages, {language}) from {out / maps.MAP_LAYERS_NAME}")
    if png is not None or pdf is not None:
        images = snapshots.render_snapshots(written, png=png, pdf=pdf, overwrite=overwrite)
        click.echo(f"Printable: {', '.join(str(p) for p in images[:4])}{' …' if len(images) > 4 else ''} "
                   f"({len(images)} files)")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."))
@click.option("--name", default=None, help="Name of the study area in maps and scorecards (default: the folder's name).")
def init(folder: Path, name: str | None) -> None:
    """Write a covgap.toml for the layers and measurement files in FOLDER (default: here).

    Recognises the villages, commune layers, fibre routes, population raster and
    measurement files and their columns, and writes a commented covgap.toml that
    runs as it is (covgap run --config FOLDER/covgap.toml). Never replaces a file:
    beside an existing covgap.toml it writes covgap.toml.new. If some role cannot be
    decided, nothing is written and the message says what and why.
    """
    from covgap.init import write_config

    path, plan = write_config(folder, name=name)
    for reason in plan.reasons:
        click.echo(f"  {reason}")
    for skipped in plan.skipped:
        click.echo(f"  not used: {skipped}")
    if path.suffix == ".new":
        click.echo(f"Wrote {path}: {folder / 'covgap.toml'} exists and was left as it is; compare them")
    else:
        click.echo(f"Wrote {path}; run it with: covgap run --config {path}")


@main.command("config-doc")
def config_doc() -> None:
    """Print the reference of every covgap.toml field (default, meaning, source)."""
    click.echo(describe_config(), nl=False)


def console_main() -> None:
    """The ``covgap`` command installed by pip: :func:`main`, with a quicker end.

    When a command ends, CPython's teardown runs the garbage collector over every object
    of the libraries loaded (pandas, geopandas, pyarrow, shapely...), several times: 0.2 to
    0.3 s of each run, a tenth of the sample's fixed cost (docs/benchmark.md). By then
    every file covgap writes is closed (each output is written and renamed inside the
    command), so the objects are frozen (:func:`gc.freeze`) and those passes skip them.
    The rest of the exit is as usual: threads joined, exit handlers run, modules cleared
    and their objects freed; only objects held in reference cycles are left to the
    operating system. Not in :func:`main`, which tests call in their own process.
    """
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    console_main()
