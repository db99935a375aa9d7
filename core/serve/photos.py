"""Uploaded photos, judged by their header before any decoding: the formats taken, the pixel limit, and the
HTTP error each refusal gets."""
from __future__ import annotations

import io

from fastapi import HTTPException
from PIL import Image, UnidentifiedImageError

from core.embeddings.backbone import ImageError, ImageTooLarge, check_pixels
from core.serve.errors import echo

# The photo formats an upload may be in, and the suffix it is stored under (which sets its served content-type).
# Others (TIFF, GIF, BMP, ...) are refused with 415: fewer decoders facing the network, and none a shop needs.
# MPO: a JPEG with a multi-picture segment (many phones' photos), which Pillow names apart; stored as the JPEG it is
PHOTO_TYPES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}
PHOTO_FORMATS = "JPEG, PNG or WebP"
PHOTO_DRAFT_SIDE = 1024  # a JPEG query photo is decoded at a reduced scale keeping both sides >= this (Image.draft)


def photo_error(e: ImageError) -> HTTPException:
    """413 for a photo over the pixel limit, 415 for an upload that is not an image at all, 422 for an image
    that cannot be decoded."""
    if isinstance(e, ImageTooLarge):
        return HTTPException(413, f"the photo is {e}: send a smaller one")
    if isinstance(e.__cause__, UnidentifiedImageError):
        return HTTPException(415, f"the upload is not a {PHOTO_FORMATS} image")
    return HTTPException(422, f"the photo cannot be decoded (damaged or truncated?): {echo(e.__cause__, 200)}")


def check_upload(data: bytes) -> None:
    if not data:
        raise HTTPException(422, f"the upload is empty: attach a photo ({PHOTO_FORMATS})")


def photo_suffix(data: bytes, max_pixels: int) -> str:
    """The file suffix of an uploaded photo, from its header alone (``Image.open`` decodes nothing): 415 if
    it is not one of PHOTO_TYPES, 413 if it has more than ``max_pixels`` pixels (see :func:`photo_error`).
    Whether it decodes is found when it is decoded, under a decode slot."""
    check_upload(data)
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"]) as img:  # JPEG's opener finds MPO
            fmt, (width, height) = img.format, img.size
    except UnidentifiedImageError:
        raise HTTPException(415, f"the upload is not a {PHOTO_FORMATS} image") from None
    except Image.DecompressionBombError:  # over twice Pillow's own limit, refused by Image.open itself
        raise HTTPException(413, f"the photo has far more pixels than the limit of {max_pixels:,}: send a smaller "
                                 "one") from None
    except (OSError, ValueError) as e:
        raise HTTPException(422, f"the photo's header cannot be read (damaged?): {echo(e, 200)}") from None
    try:
        check_pixels(width, height, max_pixels)
    except ImageTooLarge as e:
        raise photo_error(e) from None
    if fmt not in PHOTO_TYPES:
        raise HTTPException(415, f"the upload is a {echo(fmt, 20)} image, not {PHOTO_FORMATS}")
    return PHOTO_TYPES[fmt]
