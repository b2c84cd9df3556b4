"""What the reports' line charts share: labelled axes, a title, a light grid and a legend."""

from matplotlib.axes import Axes


def finish_line_chart(
    axes: Axes,
    labels: tuple[str, str],
    title: str,
    legend_at: str,
    y_limits: tuple[float, float],
    *,
    x_limits: tuple[float, float] | None = None,
) -> None:
    """Label (x, y), title and lay out a chart whose lines are drawn."""
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    if x_limits is not None:
        axes.set_xlim(*x_limits)
    axes.set_ylim(*y_limits)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc=legend_at)
    axes.get_figure().tight_layout()
