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


class Ticker:
    """Progress of a long stream of small steps (``unit``: the frames of a source being scored, the clips
    of a video being encoded): in a terminal a line rewritten in place, in a log file a line at most
    every ``every`` seconds, so that a log stays short; ``total`` (None for a live source) gives the
    share done."""

    def __init__(self, label, total=None, stream=None, every=10.0, clock=time.perf_counter, unit="frames"):
        self.label, self.total, self.stream, self.every, self.clock = label, total, stream or sys.stdout, every, clock
        self.unit = unit
        self.started = self.last = clock()
        self.done = 0

    def text(self):
        seconds = self.clock() - self.started
        rate = self.done / seconds if seconds > 0 else 0.0
        share = f"/{self.total}" if self.total else ""
        return f"{self.label}: {self.done}{share} {self.unit} ({seconds:.0f} s, {rate:.1f} {self.unit}/s)"

    def update(self, done):
        self.done = done
        now = self.clock()
        if self.stream.isatty():
            print(f"\r{self.text()}", end="", file=self.stream, flush=True)
        elif now - self.last >= self.every:
            print(self.text(), file=self.stream, flush=True)
            self.last = now

    def close(self):
        if self.stream.isatty():
            print("\r" + " " * len(self.text()) + "\r", end="", file=self.stream, flush=True)
