"""``pythia-data tokenize`` / ``detokenize`` / ``retokenize``: text <-> MMIDIDX datasets."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click

from pythia_data.cli.app import cli
from pythia_data.cli.options import (
    byte_progress,
    emit_summary,
    force_option,
    job_options,
    json_option,
    load_tokenizer_option,
    make_job_executor,
    progress_factory,
    quiet_option,
    tokenizer_options,
    writes_to_stdout,
)
from pythia_data.errors import OutputExistsError
from pythia_data.io.atomic import claim_outputs
from pythia_data.tokenize.registry import ERRORS_POLICIES

load = load_tokenizer_option  # (the name the commands below use)


def dataset_name(prefix: str, key: str = "text") -> str:
    """What ``--output-prefix P`` writes, for tokenize and retokenize alike: GPT-NeoX's
    ``P_{KEY}_document`` (``.bin``/``.idx``; KEY is text for retokenize), or ``P`` itself
    when it already ends in ``_{KEY}_document``. ``P`` must name a dataset, not a folder:
    ``-o data/`` would write ``data/_text_document.bin``."""
    from pythia_data.tokenize.pipeline import output_prefix

    text = os.fspath(prefix)
    if text.endswith(("/", os.sep)) or os.path.isdir(text) or not os.path.basename(text):
        example = os.path.join(text, "NAME")
        raise click.BadParameter(
            f"{text} is a folder: give a dataset prefix in it, e.g. {example} (writes "
            f"{output_prefix(example, key)}.bin/.idx)", param_hint="--output-prefix")
    return output_prefix(text, key)


def _rate(summary: dict) -> str:
    secs = max(summary.get("seconds", 0.0), 1e-9)
    mb = summary.get("input_bytes", 0) / 1e6
    return f"{summary['documents'] / secs:,.0f} docs/s, {mb / secs:,.1f} MB/s"


@cli.command("tokenize")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output-prefix", "-o", required=True,
              help="Writes PREFIX_{KEY}_document.bin/.idx (GPT-NeoX's names).")
@click.option("--tokenizer", "-t", "spec", default=None,
              help="tokenizer.json file, a folder holding one, a hub id, or 'bundled' "
                   "(GPT-NeoX-20B, the default).")
@tokenizer_options
@click.option("--append-eod", is_flag=True, help="End every document with the EOD token.")
@click.option("--jsonl-key", "key", default="text", show_default=True,
              help="The JSON key holding the text.")
@click.option("--errors", type=click.Choice(ERRORS_POLICIES), default="strict",
              show_default=True,
              help="Invalid UTF-8 or lone surrogates: strict = error naming FILE:LINE, "
                   "replace = U+FFFD.")
@force_option("an existing output dataset")
@job_options
@json_option
@quiet_option
def tokenize_cmd(inputs, output_prefix, spec, backend, append_eod, key, errors, force,
                 workers, executor, local_mode, ray_address, unit_size, job_dir, keep_job,
                 as_json, quiet):
    """Tokenize text (.jsonl, .jsonl.zst, .txt, folders of them, - for JSON lines on
    stdin) into one MMIDIDX dataset, byte for byte as GPT-NeoX's preprocess_data.py:
    one document per JSON line (or .txt file), empty documents skipped, EOD appended
    with --append-eod. Folders are read recursively in sorted path order.

    \b
    Examples:
      pythia-data tokenize docs.jsonl --output-prefix data/mine --append-eod
      pythia-data tokenize corpus/ -o data/pile --append-eod --workers 8
      pythia-data tokenize - -o data/part --append-eod --json < part.jsonl
      pythia-data tokenize book.txt -o data/book -t ./tokenizer.json --backend hf
      pythia-data tokenize pile/ -o data/pile --append-eod --executor ray --ray-address auto

    The input is cut into work units (--unit-size bytes of JSON lines, whole .zst/.txt
    files) run by --workers threads (or processes, or Ray tasks); parts and records go to
    PREFIX_{KEY}_document.job/, so a rerun of an interrupted command does only the
    units left. The output is the same bytes whatever the units and workers.
    """
    from pythia_data.jobs import parse_size
    from pythia_data.tokenize.pipeline import expand_inputs, tokenize_files
    from pythia_data.tokenize.units import tokenize_units

    target = dataset_name(output_prefix, key)
    files = expand_inputs(inputs)
    if not force:
        for suffix in (".bin", ".idx"):
            if os.path.lexists(target + suffix):
                raise OutputExistsError(target + suffix)
    unit_bytes = parse_size(unit_size)
    runner = make_job_executor(executor, workers, ray_address, gpu=backend == "cuda",
                               local_mode=local_mode)
    # the outputs' locks first: a second run into them is refused before the slow start-up
    with claim_outputs([target + ".bin", target + ".idx"]), contextlib.closing(runner):
        # Local workers are not started ahead of the plan (LocalExecutor.start): it gained
        # nothing measurable on 2 cores, and a Ctrl-C during that early start left workers
        # unpickling the pool's semaphores the exiting driver had already removed. Ray's
        # are (they start slower and per job): closing the runner cancels them.
        if executor == "ray" and "-" not in files:
            runner.start("pythia_data.tokenize.units")
        tok = load(spec, backend, errors=errors)
        if "-" in files:  # standard input cannot be cut into units or read twice: one stream
            with byte_progress(None, quiet, "tokenize") as update:
                summary = tokenize_files(files, output_prefix, tok, key=key,
                                         append_eod=append_eod, errors=errors,
                                         overwrite=force, progress=update)
        else:
            summary = tokenize_units(files, target, tok, runner, key=key,
                                     append_eod=append_eod, errors=errors, overwrite=force,
                                     unit_bytes=unit_bytes, job_dir=job_dir,
                                     keep_job=keep_job, progress=progress_factory(quiet))
    for warning in summary.get("warnings", ()):
        click.echo(f"pythia-data: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(summary))
        return
    skipped = summary["skipped_empty"]
    click.echo(
        f"tokenized {summary['documents']:,} documents ({summary['tokens']:,} tokens, "
        f"{summary['dtype']}{', EOD appended' if append_eod else ''}"
        f"{f', {skipped:,} empty skipped' if skipped else ''}) from {summary['inputs']} "
        f"input(s) into {summary['output']}.bin/.idx in {summary['seconds']:.1f} s "
        f"({_rate(summary)}; {tok.backend} backend)")


@cli.command("detokenize")
@click.argument("data")
@click.option("--output", "-o", default="-", show_default=True,
              help="JSON lines file, or - for stdout.")
@click.option("--tokenizer", "-t", "spec", default=None,
              help="Tokenizer the data was made with [bundled GPT-NeoX-20B].")
@tokenizer_options
@force_option("an existing output file")
@job_options
@json_option
@quiet_option
def detokenize_cmd(data, output, spec, backend, force, workers, executor, local_mode,
                   ray_address, unit_size, job_dir, keep_job, as_json, quiet):
    """Write DATA back as text: one {"text": ...} JSON line per document, the tokenizer's
    decode (special tokens kept) of the document without its final EOD.

    \b
    Examples:
      pythia-data detokenize data/mine_text_document -o mine.jsonl
      pythia-data detokenize data/mine_text_document | head -n 3
    """
    from pythia_data.jobs import parse_size
    from pythia_data.tokenize.units import detokenize_units

    unit_bytes = parse_size(unit_size)
    runner = make_job_executor(executor, workers, ray_address, gpu=backend == "cuda",
                               local_mode=local_mode, default_mode="process")
    with claim_outputs([output]):
        tok = load(spec, backend)
        stream = sys.stdout.buffer if output == "-" else None
        summary = detokenize_units(data, tok, output, runner, stream=stream,
                                   overwrite=force or output == "-", unit_bytes=unit_bytes,
                                   job_dir=job_dir, keep_job=keep_job,
                                   progress=progress_factory(quiet))
    emit_summary(summary, f"wrote {summary['documents']:,} documents ({summary['bytes']:,} "
                 f"bytes) to {'stdout' if output == '-' else output}",
                 as_json=as_json, data_on_stdout=writes_to_stdout(output))


@cli.command("retokenize")
@click.argument("data")
@click.option("--tokenizer", "-t", "spec", required=True, help="The new tokenizer.")
@click.option("--output-prefix", "-o", required=True,
              help="Writes PREFIX_text_document.bin/.idx (as tokenize does; a PREFIX "
                   "ending in _text_document is used as it is).")
@click.option("--from-tokenizer", "from_spec", default=None,
              help="The tokenizer DATA was made with [bundled GPT-NeoX-20B].")
@click.option("--eod-id", type=click.IntRange(min=0), default=None,
              help="The token ending each document that ended in an EOD [the new "
                   "tokenizer's end-of-document token; required when it has none].")
@tokenizer_options
@force_option("an existing output dataset")
@job_options
@json_option
@quiet_option
def retokenize_cmd(data, spec, output_prefix, from_spec, eod_id, backend, force, workers,
                   executor, local_mode, ray_address, unit_size, job_dir, keep_job, as_json,
                   quiet):
    """Decode every document of DATA with the old tokenizer and encode it with the new
    one: same documents, same order, the new EOD where a document ended in the old one.
    Writes PREFIX_text_document.bin/.idx, the names tokenize gives.

    \b
    Examples:
      pythia-data retokenize data/mine_text_document -t ./llama/tokenizer.json -o data/mine_llama
      pythia-data retokenize data/a -t bundled -o data/a_again --backend hf --json
    """
    from pythia_data.jobs import parse_size
    from pythia_data.tokenize.units import retokenize_units

    unit_bytes = parse_size(unit_size)
    runner = make_job_executor(executor, workers, ray_address, gpu=backend == "cuda",
                               local_mode=local_mode)
    output_prefix = dataset_name(output_prefix)
    with claim_outputs([output_prefix + ".bin", output_prefix + ".idx"]):
        old = load(from_spec, backend)
        new = load(spec, backend)
        summary = retokenize_units(data, old, new, output_prefix, runner, overwrite=force,
                                   eod_id=eod_id, unit_bytes=unit_bytes, job_dir=job_dir,
                                   keep_job=keep_job, progress=progress_factory(quiet))
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"retokenized {summary['documents']:,} documents into {summary['output']} "
               f"({summary['tokens']:,} tokens, {summary['dtype']}) in "
               f"{summary['seconds']:.1f} s")
