"""The sections `opensesame train` reads: the corpus, the session generator's mixture, the fit, the cold start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.settings.section import PROJECT_ROOT, Section


class FitSettings(Section):
    """LightGBM lambdarank; early stopping on held-out specs."""

    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0)
    rounds: int = Field(600, ge=1)
    # As long as the rounds: LightGBM stops when *any* of NDCG@1/3/5 on the held-out specs has not improved for this
    # many rounds, and NDCG@1 plateaus long before the others stop climbing (docs/benchmarks.md, "Patience").
    early_stopping: int = Field(600, ge=1)
    # Larger leaves and an L2 penalty, sized for the full corpus (~1.4M rows; docs/decisions.md, "fit settings"). A
    # corpus of a few hundred problems needs smaller leaves (the tests' 40).
    min_data_in_leaf: int = Field(100, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    lambdarank_truncation_level: int = Field(20, ge=1)
    # Ablations: features blanked (missing) in training, so the model learns without them.
    ablate: list[str] = Field(default_factory=list, description="feature names (pipeline/ranking/features.py)")


class SessionShapes(Section):
    """The mixture of session shapes the training generator draws from (train/sessions.py says what each is);
    weights, normalised when drawn. The ranker's is chosen on the dev suite's macro average (docs/decisions.md)."""

    # Relative weights (they sum to 1.10): training reports the mixture it made beside them (`session_shapes`).
    lookup: float = Field(0.2975, ge=0)
    act: float = Field(0.2125, ge=0)
    oneshot: float = Field(0.1275, ge=0)
    lifecycle: float = Field(0.085, ge=0)
    browse: float = Field(0.085, ge=0)
    repeat: float = Field(0.0425, ge=0)
    support: float = Field(0.10, ge=0)
    iterate: float = Field(0.05, ge=0)
    scoped: float = Field(0.05, ge=0)
    asked: float = Field(0.05, ge=0)


class ColdStartSettings(Section):
    """The ranker `make serve` starts with where there is none: trained in a minute or two on a sample of the
    specs with the packaged MiniLM, while the full preparation (embedder tuning, the full ranker) runs as a job and
    replaces it through the gate."""

    specs: int = Field(100, ge=2, description="training specs sampled")
    scale: float = Field(0.5, gt=0)


class TrainingSettings(Section):
    # Layout of ../shared/data: specs/*.json (always train) and apisguru/*.yaml (split by spec).
    data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"
    # Development set for model selection and reports; never trained on.
    # The gate's dev cases: RestBench TMDB, shipped with the code (train/devsets, MIT) so every image has them.
    dev_cases: Path = PROJECT_ROOT / "train" / "devsets" / "tmdb_cases.jsonl"
    # The dev suite (several sets, macro average): what model selection is decided on (`opensesame eval --suite`).
    dev_suite: Path = PROJECT_ROOT / "configs" / "dev_suite.yaml"
    valid_percent: int = Field(20, ge=5, le=50)
    max_operations: int = Field(1000, ge=2, description="larger specs are skipped: sessions would be too sparse")
    scale: float = Field(3.0, gt=0, description="multiplies the number of sessions per spec")
    # Trained with no per-spec counts, like every spec a deployment has no labels on (the dev suite's cases, a new
    # API): labels reach the ranking through `ranking.habit_prior`'s mixture instead (docs/decisions.md).
    history_fraction: float = Field(0.0, ge=0, le=1, description="share of specs with per-spec transition counts")
    # Specs trained in the other API style (RPC <-> resource paths, train/restyle.py), with the same sessions: a
    # ranker must not learn that an API's paths always carry its structure (docs/decisions.md, "API style").
    restyled: float = Field(0.3, ge=0, le=1, description="share of training specs rendered in the other API style")
    # Chosen by the dev suite's macro MRR among seeds 13, 7 and 21 trained on the same code (docs/benchmarks.md).
    seed: int = 7
    llm_problems: int = Field(0, ge=0, description="training problems given llm features by running the LLM (0: none)")
    shapes: SessionShapes = SessionShapes()
    fit: FitSettings = FitSettings()
    max_specs: int | None = Field(None, ge=2, description="at most this many training specs (a stable sample); "
                                  "None: all")
    cold_start: ColdStartSettings = ColdStartSettings()
    # Parsing the specs and building each problem's feature rows are independent of one another.
    workers: int = Field(0, ge=0, description="processes parsing specs and building feature rows, and threads "
                         "tuning the embedder (0: one per CPU this process may use)")
