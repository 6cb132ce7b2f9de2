#!/usr/bin/env bash
# setup.sh — provide the CUDA 11.8 driver-API headers, the libcuda stub and
# nvcc 11.8 needed to build ptqgate's CUDA backend (-tags cuda) and to
# regenerate its PTX, without installing the CUDA toolkit.
#
# When cuda.h is already found (CUDA_HOME, /usr/local/cuda, /usr/include)
# nothing is downloaded. Otherwise the headers and the stub come from
# Debian's nvidia-cuda-dev and nvcc from nvidia-cuda-toolkit (both in the
# non-free component), extracted with dpkg-deb into a folder outside the
# repository: $PTQGATE_CUDA_DIR, default $HOME/.cache/ptqgate-cuda. NVIDIA's
# headers and stubs are never copied into the repository.
#
# Usage: scripts/cuda/setup.sh [--nvcc] [--print-env]
#   --nvcc       also extract nvcc 11.8 (needed by `make kernels` only)
#   --print-env  print shell assignments (CGO_CFLAGS, CGO_LDFLAGS, NVCC)
#                on stdout; everything else goes to stderr
set -euo pipefail

want_nvcc=0
print_env=0
for a in "$@"; do
	case "$a" in
	--nvcc) want_nvcc=1 ;;
	--print-env) print_env=1 ;;
	-h | --help)
		sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "setup.sh: unknown argument $a" >&2
		exit 2
		;;
	esac
done

dir="${PTQGATE_CUDA_DIR:-$HOME/.cache/ptqgate-cuda}"
log() { echo "setup.sh: $*" >&2; }

# find_system prints an include directory holding cuda.h, if any.
find_system() {
	for d in "${CUDA_HOME:-}/include" /usr/local/cuda/include /usr/include; do
		if [ -n "$d" ] && [ -f "$d/cuda.h" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# cuda_major prints the CUDA_VERSION of a cuda.h (e.g. 11080).
cuda_version() { sed -n 's/^#define CUDA_VERSION \([0-9]*\).*/\1/p' "$1/cuda.h" | head -1; }

need_apt() {
	if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
		log "no cuda.h found and this is not a Debian/Ubuntu system: install the CUDA 11.8 headers and set CGO_CFLAGS=-I<include> CGO_LDFLAGS=-L<lib with libcuda.so>"
		exit 2
	fi
	if ! grep -rqs 'non-free' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		if [ "$(id -u)" != 0 ]; then
			log "the Debian non-free component is not enabled; as root run:"
			log "  sed -i 's/^Components: main\$/Components: main contrib non-free non-free-firmware/' /etc/apt/sources.list.d/debian.sources && apt-get update"
			exit 2
		fi
		log "enabling the Debian non-free component"
		sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' /etc/apt/sources.list.d/debian.sources
		apt-get update -qq >&2
	fi
}

fetch() { # fetch PACKAGE: download the .deb into $dir/debs (once)
	mkdir -p "$dir/debs"
	if ! ls "$dir/debs/$1"_*.deb >/dev/null 2>&1; then
		log "downloading $1"
		(cd "$dir/debs" && apt-get download "$1" >&2) || {
			apt-get update -qq >&2
			(cd "$dir/debs" && apt-get download "$1" >&2)
		}
	fi
}

inc=""
lib=""
if sys=$(find_system) && [ "$(cuda_version "$sys")" -lt 12000 ]; then
	inc="$sys"
	for l in "${CUDA_HOME:-/nonexistent}/lib64/stubs" /usr/local/cuda/lib64/stubs /usr/lib/x86_64-linux-gnu/stubs /usr/lib/x86_64-linux-gnu; do
		if [ -e "$l/libcuda.so" ]; then
			lib="$l"
			break
		fi
	done
fi
if [ -z "$inc" ] || [ -z "$lib" ]; then
	inc="$dir/usr/include"
	lib="$dir/usr/lib/x86_64-linux-gnu/stubs"
	if [ ! -f "$inc/cuda.h" ] || [ ! -e "$lib/libcuda.so" ]; then
		need_apt
		fetch nvidia-cuda-dev
		log "extracting headers and stubs (about 20 s)"
		dpkg-deb --fsys-tarfile "$dir"/debs/nvidia-cuda-dev_*.deb |
			tar -x -C "$dir" ./usr/include ./usr/lib/x86_64-linux-gnu/stubs
	fi
fi

nvcc=""
if [ "$want_nvcc" = 1 ]; then
	nvcc="$dir/tk/usr/lib/nvidia-cuda-toolkit/bin/nvcc"
	if [ ! -x "$nvcc" ]; then
		need_apt
		fetch nvidia-cuda-toolkit
		log "extracting nvcc"
		mkdir -p "$dir/tk"
		dpkg-deb -x "$dir"/debs/nvidia-cuda-toolkit_*.deb "$dir/tk"
	fi
	# The packaged nvcc.profile links to /etc/nvcc.profile with absolute
	# paths; replace it with a relocatable one.
	prof="$dir/tk/usr/lib/nvidia-cuda-toolkit/bin/nvcc.profile"
	rm -f "$prof"
	cat >"$prof" <<PROFILE
TOP = \$(_HERE_)/../../..
NVVMIR_LIBRARY_DIR = \$(TOP)/lib/nvidia-cuda-toolkit/libdevice
PATH += \$(_HERE_):\$(TOP)/bin:
INCLUDES += "-I$inc" \$(_SPACE_)
LIBRARIES =+ \$(_SPACE_) "-L$lib"
PROFILE
fi

log "cuda.h: $inc/cuda.h (CUDA_VERSION $(cuda_version "$inc"))"
log "libcuda stub: $lib"
[ -n "$nvcc" ] && log "nvcc: $nvcc"
if [ "$print_env" = 1 ]; then
	echo "CGO_CFLAGS=-I$inc"
	echo "CGO_LDFLAGS=-L$lib"
	[ -n "$nvcc" ] && echo "NVCC=$nvcc"
fi
exit 0
