"""The explorer's limits (tests may lower them) and its 4xx/5xx error."""

from __future__ import annotations

LIMITS = {
    "max_seed": 2**63 - 1,        # seeds are 0 .. 2**63 - 1 (torch.Generator.manual_seed's range)
    "max_n": 256,                 # images per grid
    "max_steps": 32,              # images per interpolation row
    "max_offset": 10.0,           # |slider value|, in prior standard deviations
    "max_upload_bytes": 10 * 2**20,
    # Pixels decoded per upload (a JPEG's at the scale its draft mode decodes it, up to 1/8 per side). 4096 x 4096
    # takes 12 MP phone photos and 4K frames; decoded, that is at most 64 MiB (4 bytes a pixel), the one
    # full-size buffer an upload holds (conversions and reduction then go a 1 MP band at a time).
    "max_upload_pixels": 4096 * 4096,
    "heavy_requests": 2,          # uploads read and decoded at the same time (so ~2 x 75 MiB at most)
    "heavy_wait_s": 5.0,          # how long an upload waits for a free slot before its 503
}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, headers: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.headers = message, status, headers
