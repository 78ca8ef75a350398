"""``pythia-data tokenize`` / ``detokenize`` / ``retokenize``: text <-> MMIDIDX datasets."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import click

from pythia_data.cli.app import cli
from pythia_data.cli.options import (
    emit_summary,
    force_option,
    json_option,
    load_tokenizer_option,
    quiet_option,
    show_progress,
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


@contextlib.contextmanager
def doc_progress(quiet: bool, desc: str):
    """``update(documents, bytes)`` drawing a tqdm bar (MB/s, docs/s) on stderr, or None."""
    if not show_progress(quiet):
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, desc=desc, file=sys.stderr, dynamic_ncols=True,
               leave=False)
    started = time.monotonic()
    docs = 0

    def update(n_docs: int, n_bytes: int) -> None:
        nonlocal docs
        docs += n_docs
        rate = docs / max(time.monotonic() - started, 1e-9)
        bar.set_postfix_str(f"{docs:,} docs, {rate:,.0f} docs/s", refresh=False)
        bar.update(n_bytes)

    try:
        yield update
    finally:
        bar.close()


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
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Tokenizer threads [min(CPUs, 8)].")
@click.option("--errors", type=click.Choice(ERRORS_POLICIES), default="strict",
              show_default=True,
              help="Invalid UTF-8 or lone surrogates: strict = error naming FILE:LINE, "
                   "replace = U+FFFD.")
@force_option("an existing output dataset")
@json_option
@quiet_option
def tokenize_cmd(inputs, output_prefix, spec, backend, append_eod, key, workers, errors,
                 force, as_json, quiet):
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
    """
    from pythia_data.tokenize.pipeline import expand_inputs, tokenize_files

    target = dataset_name(output_prefix, key)
    files = expand_inputs(inputs)
    if not force:
        for suffix in (".bin", ".idx"):
            if os.path.lexists(target + suffix):
                raise OutputExistsError(target + suffix)
    options = {"errors": errors}
    if workers:
        options["workers"] = workers
    # the outputs' locks first: a second run into them is refused before the slow start-up
    with claim_outputs([target + ".bin", target + ".idx"]):
        tok = load(spec, backend, **options)
        with doc_progress(quiet, "tokenize") as update:
            summary = tokenize_files(files, output_prefix, tok, key=key,
                                     append_eod=append_eod, errors=errors, overwrite=force,
                                     progress=update)
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
@json_option
@quiet_option
def detokenize_cmd(data, output, spec, backend, force, as_json, quiet):
    """Write DATA back as text: one {"text": ...} JSON line per document, the tokenizer's
    decode (special tokens kept) of the document without its final EOD.

    \b
    Examples:
      pythia-data detokenize data/mine_text_document -o mine.jsonl
      pythia-data detokenize data/mine_text_document | head -n 3
    """
    from pythia_data.tokenize.pipeline import detokenize

    with claim_outputs([output]):
        tok = load(spec, backend)
        stream = sys.stdout.buffer if output == "-" else None
        with doc_progress(quiet, "detokenize") as update:
            summary = detokenize(data, tok, output, stream=stream,
                                 overwrite=force or output == "-", progress=update)
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
@json_option
@quiet_option
def retokenize_cmd(data, spec, output_prefix, from_spec, eod_id, backend, force, as_json,
                   quiet):
    """Decode every document of DATA with the old tokenizer and encode it with the new
    one: same documents, same order, the new EOD where a document ended in the old one.
    Writes PREFIX_text_document.bin/.idx, the names tokenize gives.

    \b
    Examples:
      pythia-data retokenize data/mine_text_document -t ./llama/tokenizer.json -o data/mine_llama
      pythia-data retokenize data/a -t bundled -o data/a_again --backend hf --json
    """
    from pythia_data.tokenize.pipeline import retokenize

    output_prefix = dataset_name(output_prefix)
    with claim_outputs([output_prefix + ".bin", output_prefix + ".idx"]):
        old = load(from_spec, backend)
        new = load(spec, backend)
        with doc_progress(quiet, "retokenize") as update:
            summary = retokenize(data, old, new, output_prefix, overwrite=force,
                                 progress=update, eod_id=eod_id)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"retokenized {summary['documents']:,} documents into {summary['output']} "
               f"({summary['tokens']:,} tokens, {summary['dtype']}) in "
               f"{summary['seconds']:.1f} s")
