# The benchmark chart: one panel per figure, each client's median side by side.
#   gnuplot -e "datafile='chart.dat'; outfile='chart.png'; subtitle='...'" bench/chart.gp
# chart.dat (written by bench/report.lua): blocks separated by two blank lines, each headed
# by "# title" and holding one '"client" value color' row per client, in a fixed order.
if (!exists("subtitle")) subtitle = ""
set terminal pngcairo size 1600,820 font "DejaVu Sans,10"
set output outfile
set multiplot layout 2,4 title "llm benchmarks (median of the runs; " . subtitle . ")" font ",13"
set style fill solid 0.85 border -1
set boxwidth 0.7
set grid ytics
set yrange [0:*]
set xtics rotate by -30 nomirror font ",9"
set key off
do for [i = 0:7] {
  t = system(sprintf("awk 'BEGIN{b=0} /^# /{if (b==%d) {sub(/^# /, \"\"); print; exit} b++}' %s", i, datafile))
  set title t font ",10"
  plot datafile index i using 0:2:3:xtic(1) with boxes lc rgb variable, \
       '' index i using 0:2:(($2 == 0) ? "n/a" : ($2 >= 100) ? sprintf("%.0f", $2) : sprintf("%.3g", $2)) with labels offset 0,0.6 font ",8"
}
unset multiplot
