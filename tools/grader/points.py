"""The points of the grade: each piece's checks and what each is worth, and the record of one
check of one submission (docs/grading.md has the table and what each check means)."""

from dataclasses import dataclass, field

POINTS = (  # (piece, check, points)
    ("FCLayer.ComputeUp", "outputs", 1.5),
    ("FCLayer.ComputeUp", "no loops", 0.5),
    ("FCLayer.ComputeDown", "input derivative", 1.0),
    ("FCLayer.ComputeDown", "weight derivative", 1.0),
    ("FCLayer.ComputeDown", "bias derivative", 1.0),
    ("FCLayer.ComputeDown", "no loops", 1.0),
    ("ConvLayer.ComputeUp", "outputs", 2.5),
    ("ConvLayer.ComputeUp", "no loops", 0.5),
    ("ConvLayer.ComputeDown", "input derivative", 2.5),
    ("ConvLayer.ComputeDown", "weight derivative", 2.5),
    ("ConvLayer.ComputeDown", "no loops", 1.0),
)
MAX_POINTS = sum(p for _, _, p in POINTS)


@dataclass
class Check:
    piece: str
    check: str
    max_points: float
    points: float = 0.0
    passed: bool = False
    reason: str = ""
    details: dict = field(default_factory=dict)
