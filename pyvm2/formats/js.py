"""JavaScript ecosystem files (.config.js, .cjs, .mjs): run by node, which prints the config as JSON."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

from pyvm2.errors import ConfigError
from pyvm2.formats.text import Parsed

NODE_TIMEOUT = 10.0

# Run by `node`: load the config (require, or import for ES modules) and print it as JSON.
_NODE_LOADER = r"""
const file = process.argv[1];
(async () => {
  let conf;
  if (file.endsWith('.mjs')) {
    conf = await import(require('url').pathToFileURL(file).href);
  } else {
    conf = require(file);
  }
  if (conf && typeof conf === 'object' && 'default' in conf && !('apps' in conf)) conf = conf.default;
  const text = JSON.stringify(conf === undefined ? null : conf);
  process.stdout.write(text === undefined ? 'null' : text);
})().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + '\n');
  process.exit(1);
});
"""


def read(data: bytes, path: str, display: str, base_env: Mapping[str, str] | None) -> Parsed:
    """Load the file with node (found on `base_env`'s PATH); no positions are known."""
    return Parsed(_load_js(path, display, base_env), None, [])


def _load_js(path: str, display: str, base_env: Mapping[str, str] | None) -> Any:
    import subprocess

    env = dict(base_env) if base_env is not None else dict(os.environ)
    node = shutil.which("node", path=env.get("PATH") or os.defpath)
    if node is None:
        raise ConfigError(f"node is needed to read {os.path.basename(path)} and it is not on PATH",
                          "convert it to ecosystem.json, or install Node.js", file=display)
    try:
        proc = subprocess.run([node, "-e", _NODE_LOADER, path], capture_output=True, env=env,
                              timeout=NODE_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"node did not finish loading the file within {NODE_TIMEOUT:.0f} s",
                          "an ecosystem file should only export the config (does it start "
                          "something or wait for input?)", file=display) from None
    except OSError as e:
        raise ConfigError(f"cannot run node: {e.strerror or e}", None, file=display) from None
    if proc.returncode != 0:
        raise _node_error(proc.stderr.decode("utf-8", "replace"), path, display)
    try:
        return json.loads(proc.stdout.decode("utf-8", "replace") or "null")
    except ValueError:
        raise ConfigError("node printed something that is not the config", None,
                          file=display) from None


def _node_error(stderr: str, path: str, display: str) -> ConfigError:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    message = next((ln.strip() for ln in lines if re.match(r"^\s*\w*(Error|Exception)\b", ln)),
                   lines[0].strip() if lines else "node failed")
    line = col = None
    for ln in lines:
        m = re.search(re.escape(path) + r":(\d+)(?::(\d+))?", ln)
        if m:
            line = int(m.group(1))
            col = int(m.group(2)) if m.group(2) else None
            break
    return ConfigError(message, f"node could not load it; run `node {path}` to see the whole error",
                       file=display, line=line, col=col)
