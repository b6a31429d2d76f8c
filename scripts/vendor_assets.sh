#!/usr/bin/env bash
# Vendor the website's front-end assets so the built book renders fully offline.
#
#   scripts/vendor_assets.sh          # run from the repository root, before `jupyter-book build .`
#
# Installs the npm packages pinned in package.json/package-lock.json with `npm ci` into node_modules/
# and copies only what the pages load into _vendor/ (both gitignored). _config.yml points Sphinx at it:
#   html_static_path: ["_vendor"]  ->  _build/html/_static/...
#   _vendor/mathjax/tex-chtml.js           MathJax 3 (mathjax_path) + the files it loads lazily:
#                                          CHTML woff fonts, TeX extensions (autoload/require),
#                                          accessibility/menu components and SRE locale maps
#   _vendor/require.js                     RequireJS (nb_ipywidgets_js)
#   _vendor/widgets-setup.js               from scripts/vendor/: RequireJS paths, MathJax.Hub shim
#   _vendor/html-manager/embed-amd.js      @jupyter-widgets/html-manager AMD bundle (nb_ipywidgets_js);
#                                          bundles base, controls and output, so no widget CDN is needed
# Idempotent: does nothing when node_modules/ and _vendor/ already match the lockfile and this script.
# Set VENDOR_FORCE=1 to redo everything.
set -euo pipefail

root="$(pwd)"
if [[ ! -f "$root/package-lock.json" || ! -f "$root/_config.yml" ]]; then
    echo "vendor_assets.sh: run me from the repository root (package-lock.json and _config.yml expected)" >&2
    exit 1
fi

# Stamps: node_modules/ follows the lockfile; _vendor/ also follows this script and scripts/vendor/.
npm_stamp="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
stamp="$(cat package.json package-lock.json "${BASH_SOURCE[0]}" scripts/vendor/* | sha256sum | cut -d' ' -f1)"
nm_stamp_file="node_modules/.bncourse-vendor-stamp"
vendor_stamp_file="_vendor/.stamp" # dotfiles under html_static_path are not copied by Sphinx

if [[ "${VENDOR_FORCE:-0}" != 1 && -f "$vendor_stamp_file" && "$(cat "$vendor_stamp_file")" == "$stamp" ]]; then
    echo "vendor_assets.sh: _vendor/ is up to date"
    exit 0
fi

if [[ "${VENDOR_FORCE:-0}" == 1 || ! -f "$nm_stamp_file" || "$(cat "$nm_stamp_file")" != "$npm_stamp" ]]; then
    # --ignore-scripts: none of these packages needs an install script.
    npm ci --ignore-scripts --no-audit --no-fund --prefer-offline
    echo "$npm_stamp" >"$nm_stamp_file"
fi

tmp="$(mktemp -d node_modules/.vendor-tmp.XXXXXX)" # ignored, and on the same disk as _vendor/
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # mktemp makes it 0700

# --- MathJax 3 (tex-chtml combined component + what it may load lazily) ---
mj=node_modules/mathjax/es5
mkdir -p "$tmp/mathjax/input/tex" "$tmp/mathjax/output/chtml/fonts"
cp "$mj/tex-chtml.js" "$tmp/mathjax/"
cp -r "$mj/input/tex/extensions" "$tmp/mathjax/input/tex/"    # \require / autoload packages
cp -r "$mj/output/chtml/fonts/woff-v2" "$tmp/mathjax/output/chtml/fonts/" # CHTML fonts
cp -r "$mj/a11y" "$mj/ui" "$mj/sre" "$tmp/mathjax/"           # menu: assistive MathML, explorer, speech
cp -r "$mj/input/mml.js" "$mj/input/mml" "$tmp/mathjax/input/" # explorer
cp node_modules/mathjax/LICENSE "$tmp/mathjax/LICENSE"

# --- RequireJS (the AMD loader that embed-amd.js needs) ---
cp node_modules/requirejs/require.js "$tmp/require.js"

# --- @jupyter-widgets/html-manager (renders the widget state embedded in the pages) ---
hm=node_modules/@jupyter-widgets/html-manager/dist
mkdir -p "$tmp/html-manager"
cp "$hm/embed-amd.js" "$hm/embed.js.LICENSE.txt" "$tmp/html-manager/"
# Font Awesome webfonts referenced by the bundled CSS (widget icons); woff2/woff are all browsers need.
cp "$hm"/*.woff2 "$hm"/*.woff "$tmp/html-manager/"
# RequireJS paths for those fonts + a MathJax 2 API shim for the bundled controls (see the file).
cp scripts/vendor/widgets-setup.js "$tmp/widgets-setup.js"

echo "$stamp" >"$tmp/.stamp"
rm -rf _vendor
mv "$tmp" _vendor
trap - EXIT
echo "vendor_assets.sh: wrote _vendor/ ($(du -sh _vendor | cut -f1))"
