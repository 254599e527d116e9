"""The composed codec: five components behind CompressAI's ``CompressionModel`` interface."""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel

from codec_lab.corelib.contracts import (
    Decoder,
    Encoder,
    EntropyCoder,
    Quantizer,
    Rate,
    RateOutput,
    SetupContext,
)
from codec_lab.corelib.entropy_models import coding_only
from codec_lab.corelib.errors import BitstreamError, CodecError, ConfigError, ConfigMismatchError
from codec_lab.corelib.guards import Blame
from codec_lab.corelib.streams import Stream, StreamSpec

__all__ = ["Codec", "config_digest", "symbols_crc"]


def _item(mask: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if mask is None else mask[i]


def _context(streams: list[Stream]) -> dict[str, Stream]:
    """The streams coded before the current one, by name, as the decoder has them: masked
    positions read 0 on both sides, so a coder conditioning on them stays in step."""
    out = {}
    for s in streams:
        sym = s.symbols if s.mask is None else torch.where(s.full_mask(), s.symbols, 0)
        out[s.spec.name] = Stream(s.spec, sym, s.mask)
    return out


def config_digest(config: Mapping[str, Any]) -> torch.Tensor:
    """8 bytes of SHA-256 over the resolved ``model`` config (zeros when it is unknown)."""
    if not config:
        return torch.zeros(8, dtype=torch.uint8)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return torch.tensor(list(hashlib.sha256(text.encode()).digest()[:8]), dtype=torch.uint8)


def symbols_crc(symbols: torch.Tensor, mask: torch.Tensor | None, salt: bytes = b"") -> int:
    """CRC-32 of ``salt`` then the transmitted symbols, to detect a decoder desync (or a
    changed header field the salt encodes, such as the image size) instead of garbage."""
    # Boolean indexing copies: skip it when every position is sent (the common case).
    everything = mask is None or bool(mask.all())
    sent = symbols.reshape(-1) if everything else symbols[mask.expand_as(symbols)]
    return zlib.crc32(sent.to(torch.int32).cpu().numpy().tobytes(), zlib.crc32(salt))


class Codec(CompressionModel):
    """A codec composed of encoder → quantizer → rate → (entropy coder) → decoder.

    It is a ``compressai.models.CompressionModel``: ``forward`` returns ``x_hat`` and
    ``likelihoods`` (from the entropy coder's real model, or the rate plugin's estimator),
    ``compress``/``decompress`` produce and read real bytes, and ``aux_loss``/``update``/
    ``load_state_dict`` behave as CompressAI's tools expect.

    Args:
        encoder, quantizer, rate, coder, decoder: constructed components.
        config: the resolved ``model`` config section the components were built from
            (kept so a run can rebuild the same codec).
        origins: ``kind -> where the component comes from`` (``dist==version``,
            ``built-in``, ``CODEC_PLUGINS``), named when a component breaks its contract;
            the registry's builder passes it (default: the component's module).

    What each component returns is checked where it is cheap (types, dtypes, shapes: tensor
    metadata only); a component that breaks its contract raises ``PluginError`` naming it.
    """

    def __init__(
        self,
        encoder: Encoder,
        quantizer: Quantizer,
        rate: Rate,
        coder: EntropyCoder,
        decoder: Decoder,
        config: Mapping[str, Any] | None = None,
        origins: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.rate = rate
        self.coder = coder
        self.decoder = decoder
        self.config = dict(config or {})
        parts = {"encoder": encoder, "quantizer": quantizer, "rate": rate, "coder": coder,
                 "decoder": decoder}  # fmt: skip
        # Plain attribute (not a module attribute): never in the state dict.
        self.__dict__["_blame"] = {
            kind: Blame(kind, str(getattr(type(part), "name", "") or type(part).__name__),
                        (origins or {}).get(kind) or f"module {type(part).__module__}")
            for kind, part in parts.items()
        }  # fmt: skip
        # Travels in every state dict (and so in CompressAI checkpoints): weights of one
        # configuration are never silently loaded into a codec of another.
        self.register_buffer("config_digest", config_digest(self.config))
        # One set-up call per component, in data-path order; the rate's declared specs are
        # kept and every stream is built from them.
        ctx = SetupContext(
            latent_channels=encoder.latent_channels,
            alphabet=quantizer.alphabet_size,
            downsampling_factor=encoder.downsampling_factor,
            parts=MappingProxyType(parts),
        )
        encoder.setup(ctx)
        quantizer.setup(ctx)
        specs = self.blame("rate").specs(rate.setup(ctx))
        rate.specs = specs
        ctx = replace(ctx, specs=specs)
        coder.setup(ctx)
        decoder.setup(ctx)

    # ------------------------------------------------------------------ description
    def blame(self, kind: str) -> Blame:
        """The component of ``kind`` as a broken contract names it: kind, name, origin."""
        return self.__dict__["_blame"][kind]

    def origin(self, kind: str) -> str:
        """Where the component of ``kind`` comes from (``dist==version``, ``built-in``, …)."""
        return self.blame(kind).origin

    @property
    def specs(self) -> tuple[StreamSpec, ...]:
        """The rate's streams in coding order, as its ``setup`` declared them."""
        return self.rate.specs

    @property
    def parts(self) -> dict[str, Any]:
        """The components by kind, in data-path order."""
        return {
            "encoder": self.encoder,
            "quantizer": self.quantizer,
            "rate": self.rate,
            "coder": self.coder,
            "decoder": self.decoder,
        }

    def components(self) -> dict[str, tuple[str, str]]:
        """``kind -> (name, version)`` for every component."""
        return {k: (type(c).name, type(c).version) for k, c in self.parts.items()}

    @property
    def downsampling_factor(self) -> int:
        """Inputs are padded to a multiple of this before coding."""
        f = self.encoder.downsampling_factor
        return math.lcm(f, self.rate.tile_size) if self.rate.tile_size else f

    def weights_digest(self, cached: bool = True) -> str:
        """SHA-256 (hex, 16 chars) of every parameter and buffer: identifies the model (a
        compressed file stores it as 8 bytes).

        ``config_digest`` is left out, so files keep decoding with runs saved before it
        existed. The result is cached, keyed on every state tensor's identity, version
        counter, storage and layout: optimizer steps, ``copy_``/``load_state_dict``, a replaced
        tensor or ``.to()`` all recompute it. Writes that bypass the version counter (in place
        through ``.data`` or a NumPy view) need ``cached=False``.
        """
        state = self.state_dict(keep_vars=True)
        key = tuple((k, id(t), t._version, t.data_ptr(), t.dtype, tuple(t.shape), t.device)
                    for k, t in state.items() if k != "config_digest")  # fmt: skip
        hit = self.__dict__.get("_weights_digest_cache")
        if cached and hit is not None and hit[0] == key:
            return hit[1]
        h = hashlib.sha256()
        for name, value in sorted(state.items()):
            if name == "config_digest":
                continue
            t = value.detach().cpu().contiguous()
            h.update(name.encode())
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
        digest = h.hexdigest()[:16]
        # Plain attribute (not a module attribute or buffer): never in the state dict.
        self.__dict__["_weights_digest_cache"] = (key, digest)
        return digest

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, check_config: bool = True
    ) -> Any:
        """CompressAI's loading (entropy-table buffers resized), refusing another config's weights.

        A state dict saved from a codec of another configuration (its ``config_digest``
        differs) is refused with :class:`ConfigMismatchError`, so that a checkpoint exported
        from one run and loaded under another run's name is not evaluated with the wrong
        settings. A state dict without the key (older runs, CompressAI's own models) loads.

        Args:
            check_config: False when the caller pairs weights and config itself (a run
                folder, whose ``config.yaml`` may be edited for coding-time settings).
        """
        state = dict(state_dict)
        ours = self.config_digest
        theirs = state.get("config_digest")
        if (check_config and theirs is not None and bool(ours.any()) and bool(theirs.any())
                and not torch.equal(theirs.detach().cpu(), ours.detach().cpu())):  # fmt: skip
            raise ConfigMismatchError(
                f"these weights were saved from a codec with another configuration (config "
                f"digest {bytes(theirs.tolist()).hex()}, this codec {bytes(ours.tolist()).hex()})",
                "load them with the run they came from; register each run under its own name",
            )
        if theirs is None or not check_config:
            state["config_digest"] = ours.clone()
        return super().load_state_dict(state, strict=strict)

    # ------------------------------------------------------------------ transforms
    def _tiles(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, int, int]:
        b, c, h, w = x.shape
        nh, nw = h // t, w // t
        tiles = x.reshape(b, c, nh, t, nw, t).permute(0, 2, 4, 1, 3, 5)
        return tiles.reshape(b * nh * nw, c, t, t), nh, nw

    @staticmethod
    def _untile(tiles: torch.Tensor, b: int, nh: int, nw: int) -> torch.Tensor:
        _, c, th, tw = tiles.shape
        x = tiles.reshape(b, nh, nw, c, th, tw).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, c, nh * th, nw * tw)

    def analysis(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the encoder, tile by tile when the rate plugin codes tiles."""
        t = self.rate.tile_size
        f = self.encoder.downsampling_factor
        c = self.encoder.latent_channels
        if not t or (x.shape[-2] <= t and x.shape[-1] <= t):
            feats = self.encoder(x)
            self.blame("encoder").features(feats, x.shape[0], c, (x.shape[-2] // f, x.shape[-1] // f))
            return feats
        tiles, nh, nw = self._tiles(x, t)
        feats = self.encoder(tiles)
        self.blame("encoder").features(feats, tiles.shape[0], c, (t // f, t // f))
        return {k: self._untile(v, x.shape[0], nh, nw) for k, v in feats.items()}

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Run the decoder, tile by tile when the rate plugin codes tiles."""
        t = self.rate.tile_size
        f = self.encoder.downsampling_factor
        lt = t // f if t else 0
        if not t or (y_hat.shape[-2] <= lt and y_hat.shape[-1] <= lt):
            x_hat = self.decoder(y_hat)
            self.blame("decoder").synthesis(x_hat, (y_hat.shape[0], 3, y_hat.shape[-2] * f,
                                                    y_hat.shape[-1] * f))  # fmt: skip
            return x_hat
        tiles, nh, nw = self._tiles(y_hat, lt)
        x_hat = self.decoder(tiles)
        self.blame("decoder").synthesis(x_hat, (tiles.shape[0], 3, t, t))
        return self._untile(x_hat, y_hat.shape[0], nh, nw)

    # ------------------------------------------------------------------ CompressAI API
    def _rate(self, feats: Mapping[str, torch.Tensor]) -> RateOutput:
        """The rate plugin on the quantized latent, its output checked against its specs."""
        y_tilde = self._quantize(feats["y"])
        out = self.rate(y_tilde, feats, self.quantizer)
        self.blame("rate").rate_output(out, self.specs, tuple(y_tilde.shape))
        return out

    def _quantize(self, y: torch.Tensor) -> torch.Tensor:
        """The quantizer on the rate plugin's grid (shifted by its offset, if any)."""
        offset = self.rate.quantization_offset(self.quantizer)
        if offset is None:
            return self.quantizer(y)
        return self.quantizer(y - offset) + offset

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """Train/eval pass: ``{"x_hat", "likelihoods", "rate_loss", "rate", "y"}``.

        ``likelihoods`` maps stream names to the probability the real coder gives each
        symbol (1 for masked positions), so CompressAI's bpp formula is an honest estimate.
        An image of a size the codec cannot take directly is padded as :meth:`compress`
        pads it, and ``x_hat`` is cropped back (so the estimate counts what a file codes).
        """
        size = tuple(x.shape[-2:])
        padded = self.pad(x)
        feats = self.analysis(padded)
        out = self._rate(feats)
        likelihoods = out.likelihoods
        if likelihoods is None:
            likelihoods = {}
            for i, s in enumerate(out.streams):  # each stream sees the ones coded before it
                likelihoods[s.spec.name] = lik = self.coder.likelihoods(s, _context(out.streams[:i]))
                self.blame("coder").likelihoods(lik, s)
        x_hat = self.synthesis(out.y_hat)
        if tuple(padded.shape[-2:]) != size:
            x_hat = x_hat[..., : size[0], : size[1]]
        return {
            "x_hat": x_hat,
            "likelihoods": likelihoods,
            "rate_loss": out.rate_loss,
            "rate": out,
            "y": feats["y"],
        }

    def aux_loss(self) -> torch.Tensor:
        """Sum of the ``EntropyBottleneck`` aux losses (CompressAI's).

        A codec without a bottleneck returns a zero that ``backward()`` accepts, so
        CompressAI's training loop runs unchanged on every codec.
        """
        loss = super().aux_loss()  # CompressAI's sum: the int 0 when there is no bottleneck
        return loss if isinstance(loss, torch.Tensor) else torch.zeros((), requires_grad=True)

    @contextmanager
    def _inference(self) -> Iterator[None]:
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an (h, w) image is coded at: a multiple of :attr:`downsampling_factor`,
        at least the encoder's ``min_input_size``."""
        f, m = self.downsampling_factor, self.encoder.min_input_size
        return tuple(max(s + (-s) % f, m + (-m) % f) for s in (h, w))  # type: ignore[return-value]

    def latent_size(self, h: int, w: int) -> tuple[int, int]:
        """The latent (H/f, W/f) of an (h, w) image."""
        f = self.encoder.downsampling_factor
        ph, pw = self.padded_size(h, w)
        return ph // f, pw // f

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (replicate, right/bottom) to :meth:`padded_size`."""
        h, w = x.shape[-2:]
        th, tw = self.padded_size(h, w)
        ph, pw = th - h, tw - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    @contextmanager
    def coding(self) -> Iterator[None]:
        """Eval mode, no gradients, no density evaluated for likelihoods: how files are coded.

        The tiled file path (``corelib.tiling``) runs :meth:`analysis`, :meth:`rate_streams`
        and :meth:`synthesis` inside it.
        """
        with self._inference(), coding_only():
            yield

    def streams(self, x: torch.Tensor) -> list[Stream]:
        """Hard (eval-mode) streams of a batch, as :meth:`compress` codes them."""
        # The streams are all a caller of this gets: no density evaluated for likelihoods.
        with self.coding():
            return self.rate_streams(self.analysis(self.pad(x)))

    def rate_streams(self, feats: Mapping[str, torch.Tensor]) -> list[Stream]:
        """The streams the rate plugin makes of encoder features (call inside :meth:`coding`)."""
        return self._rate(feats).streams

    def encode_streams(self, streams: list[Stream],
                       crc_salt: bytes = b"") -> tuple[list[list[bytes]], list[list[int]]]:  # fmt: skip
        """Entropy-code hard streams, every batch item on its own.

        Returns:
            Per stream, per item: the bytes, and the CRC-32 of the sent symbols salted with
            ``crc_salt`` (:func:`symbols_crc`).
        """
        b = streams[0].symbols.shape[0]
        strings: list[list[bytes]] = []
        crcs: list[list[int]] = []
        # None where every position is sent: coders and the CRC then skip masking work.
        masks = [None if s.mask is None else s.full_mask() for s in streams]
        for k, s in enumerate(streams):
            self._check_positions(s.spec, tuple(s.symbols.shape[-2:]), None)
            per_item, per_crc = [], []
            for i in range(b):
                one = Stream(s.spec, s.symbols[i], _item(masks[k], i))
                earlier = [Stream(p.spec, p.symbols[i], _item(masks[j], i))
                           for j, p in enumerate(streams[:k])]  # fmt: skip
                data = self.coder.encode(one, _context(earlier))
                per_item.append(self.blame("coder").encoded(data, s.spec))
                per_crc.append(symbols_crc(one.symbols, one.mask, crc_salt))
            strings.append(per_item)
            crcs.append(per_crc)
        return strings, crcs

    def compress(self, x: torch.Tensor, crc_salt: bytes = b"") -> dict[str, Any]:
        """Code a batch of images (any size) to bytes: one list of bytes per stream.

        Returns ``{"strings", "shape", "image_size", "crc"}``; pass the whole dict to
        :meth:`decompress` as keyword arguments (CompressAI-Trainer's convention).
        Entropy tables are built first if missing (``update()``, as CompressAI requires).
        """
        self.update()
        streams = self.streams(x)
        strings, crcs = self.encode_streams(streams, crc_salt)
        shape = tuple(streams[0].symbols.shape[-2:])
        return {
            "strings": strings,
            "shape": shape,
            "image_size": tuple(x.shape[-2:]),
            "crc": crcs,
        }

    def _check_positions(self, spec: StreamSpec, hw: tuple[int, int], n_bytes: int | None) -> None:
        """Refuse a stream larger than the coder's ``max_stream_symbols``: to encode (n_bytes
        None: ConfigError, with the tile to use) or to decode (BitstreamError)."""
        most = type(self.coder).max_stream_symbols
        positions = spec.channels * hw[0] * hw[1]
        if most is None or positions <= most:
            return
        coder = type(self.coder).name
        what = f"stream {spec.name!r} of {spec.channels} x {hw[0]} x {hw[1]} = {positions:,} positions"
        if n_bytes is None:
            raise ConfigError(f"coder {coder!r} codes at most {most:,} positions per stream and tile; "
                              f"{what} is more",
                              "code the image in smaller tiles (compress --tile, whose default "
                              "already fits), or use a coder without this limit")  # fmt: skip
        raise BitstreamError(f"{what} claimed by the file is more than coder {coder!r} ever writes "
                             f"({most:,} per stream and tile)",
                             "the file is damaged (its image or tile size was changed)")  # fmt: skip

    def _check_symbol_count(self, data: bytes, spec: StreamSpec, hw: tuple[int, int],
                            mask: torch.Tensor | None) -> None:  # fmt: skip
        """Refuse a stream claiming more symbols than its bytes can carry (before decoding)."""
        limit = self.coder.max_symbols(len(data), spec)
        if limit is None:
            return
        full = spec.channels * hw[0] * hw[1]
        # count_nonzero: a sum would first copy the mask into int64 (GBs at the pixel limit).
        sent = full if mask is None else int(mask.expand(spec.channels, *hw).count_nonzero())
        if sent > limit:
            raise BitstreamError(
                f"stream {spec.name!r} would hold {sent:,} symbols in {len(data):,} bytes; this "
                f"model codes at most {limit:,} in that many bytes",
                "the file is damaged (its image size or stream lengths were changed)",
            )

    def decode_latent(self, strings: list[bytes], hw: tuple[int, int], crcs: list[int] | None = None,
                      crc_salt: bytes = b"") -> torch.Tensor:  # fmt: skip
        """Entropy-decode one item's streams into the decoder input, (1, C, h, w).

        Args:
            strings: the item's bytes, one per stream in the rate's order.
            hw: the latent size.
            crcs: per stream, the symbol CRC the encoder computed (None: not checked).
            crc_salt: the salt those CRCs were computed with.

        Raises:
            BitstreamError: a stream claims more symbols than its bytes carry, the coder fails on
                it, or its symbols differ from the encoder's.
        """
        device = next(self.parameters(), torch.empty(0)).device
        decoded: dict[str, torch.Tensor] = {}
        coded: list[Stream] = []
        for k, spec in enumerate(self.specs):
            shape = (spec.channels, *hw)
            self._check_positions(spec, hw, len(strings[k]))  # before the mask is allocated
            mask = self.rate.decode_mask(spec, decoded, hw)
            self.blame("rate").mask(mask, shape, "decode_mask", spec.name)
            self._check_symbol_count(strings[k], spec, hw, mask)
            try:
                sym = self.coder.decode(strings[k], spec, shape, mask, _context(coded))
            except CodecError:
                raise
            except Exception as e:  # a third-party coder choking on damaged bytes
                raise BitstreamError(
                    f"stream {spec.name!r} cannot be decoded by coder "
                    f"{type(self.coder).name!r} ({self.origin('coder')}): {type(e).__name__}: {e}",
                    "the file is damaged or was coded by a different model",
                ) from e
            self.blame("coder").decoded(sym, spec, shape)
            if crcs is not None and symbols_crc(sym, mask, crc_salt) != crcs[k]:
                raise BitstreamError(
                    f"stream {spec.name!r} decoded to different symbols than were "
                    "encoded (checksum mismatch)",
                    "the file is damaged or was coded by a different model or build",
                )
            decoded[spec.name] = sym.to(device)  # coders decode on the CPU
            coded.append(Stream(spec, sym, mask))
        y_hat = self.rate.reconstruct(decoded, self.quantizer, hw)
        self.blame("rate").reconstruct(y_hat, self.encoder.latent_channels, hw)
        return y_hat

    def decompress(
        self,
        strings: list[list[bytes]],
        shape: tuple[int, int] | torch.Size,
        image_size: tuple[int, int] | None = None,
        crc: list[list[int]] | None = None,
        crc_salt: bytes = b"",
    ) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`compress`: ``{"x_hat"}`` clamped to [0, 1].

        Without ``image_size`` the output keeps the padded size (CompressAI's tools crop
        it themselves). With ``crc`` the decoded symbols are checked, so a desync or a
        damaged payload is an error rather than a wrong image.
        """
        self.update()
        if len(strings) != len(self.specs):
            raise BitstreamError(
                f"expected {len(self.specs)} streams "
                f"({', '.join(s.name for s in self.specs)}), got {len(strings)}",
                "decode the file with the model that made it",
            )
        hw = (int(shape[0]), int(shape[1]))
        if image_size is not None:
            ih, iw = (int(v) for v in image_size)
            if ih < 1 or iw < 1 or self.latent_size(ih, iw) != hw:
                raise BitstreamError(
                    f"image size {ih}x{iw} does not match the latent size {hw[0]}x{hw[1]}",
                    "the file is damaged or was made by a different model",
                )
        outs = []
        with self._inference():
            for i in range(len(strings[0])):
                item_crcs = None if crc is None else [c[i] for c in crc]
                y_hat = self.decode_latent([st[i] for st in strings], hw, item_crcs, crc_salt)
                outs.append(self.synthesis(y_hat).clamp_(0, 1))
        x_hat = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
        if image_size is not None:
            x_hat = x_hat[..., : image_size[0], : image_size[1]]
        return {"x_hat": x_hat}
