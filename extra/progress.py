"""Progress that reads well in a terminal and in a log file.

In a terminal: fastprogress's bar, updated in place. Anywhere else (a file, a pipe, CI): one line
when a loop starts and one per item done, never carriage-return updates.
"""
import sys
import time


def progress(items, label, stream=None, note=None):
    """Iterate ``items`` showing ``label`` and how far the loop has come (on stdout by default); ``note``
    (item -> text, called once the loop's body has run on the item) adds what the item gave."""
    stream = stream or sys.stdout
    items = list(items)
    if stream.isatty():
        from fastprogress.fastprogress import progress_bar   # slow to import: commands' --help skip it

        bar = progress_bar(items, comment=label, leave=False)
        for item in bar:
            yield item
            if note is not None:
                bar.comment = f"{label}: {note(item)}"
        return
    started = time.perf_counter()
    for number, item in enumerate(items, 1):
        yield item
        extra = "" if note is None else f", {note(item)}"
        print(f"{label}: {number}/{len(items)} done ({time.perf_counter() - started:.1f} s){extra}", file=stream,
              flush=True)
